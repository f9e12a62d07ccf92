package tunnel

import (
	"bufio"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequestParsing feeds the tunnel server's request parsing — the
// /clusters/<name>/ path, credential headers, bearer tokens (Authorization
// and WebSocket subprotocol), the Kubernetes request info of the audit line
// and metric labels — with arbitrary methods, paths and headers. Nothing may
// panic, and after stripping no credential may be left.
//
//	go test -run '^$' -fuzz FuzzRequestParsing -fuzztime 60s ./pkg/tunnel/
func FuzzRequestParsing(f *testing.F) {
	f.Add("GET", "/clusters/east/api/v1/namespaces/default/pods?watch=true", "Authorization: Bearer abc\r\n")
	f.Add("POST", "/clusters/west/apis/apps/v1/namespaces/x/deployments", "Impersonate-User: admin\r\nImpersonate-Group: system:masters\r\n")
	f.Add("GET", "/clusters/c1/api/v1/namespaces/ns/pods/p/exec?command=sh", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.dG9rZW4, v4.channel.k8s.io\r\n")
	f.Add("X-FOO", "/clusters/a/version", "X-Remote-User: root\r\nx-remote-group: system:masters\r\nX-Remote-Extra-Scopes: *\r\n")
	f.Add("GET", "/clusters//api", "")
	f.Add("GET", "/clusters/../../etc/passwd", "")
	f.Add("GET", "/clusters/a%2Fb/api", "Proxy-Authorization: Basic eA==\r\n")
	f.Fuzz(func(t *testing.T, method, path, rawHeaders string) {
		cluster, rest, ok := splitClusterPath(path)
		if ok {
			if validateClusterName(cluster) != nil {
				t.Fatalf("splitClusterPath(%q) accepted cluster %q", path, cluster)
			}
			if !strings.HasPrefix(rest, "/") {
				t.Fatalf("splitClusterPath(%q) rest %q does not start with /", path, rest)
			}
		}
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(rawHeaders + "\r\n"))).ReadMIMEHeader()
		if err != nil {
			return
		}
		header := http.Header(h)
		_, _ = bearerToken(header.Get("Authorization"))
		_, _ = websocketBearerToken(header)
		u, err := url.ParseRequestURI(path)
		if err != nil || method == "" || strings.ContainsAny(method, " \t\r\n") {
			return
		}
		r := &http.Request{Method: method, URL: u, Header: header.Clone(), Host: "tunnel"}
		if ok {
			kr := parseKubeRequest(r, rest)
			if v := verbLabel(kr.verb); v != "other" && !knownVerbs[v] {
				t.Fatalf("verb label %q is unbounded", v)
			}
		}
		stripCredentials(header)
		if hasImpersonation(header) {
			t.Fatalf("impersonation header left after stripping: %v", header)
		}
		for k, vs := range header {
			lk := strings.ToLower(k)
			if lk == "authorization" || lk == "proxy-authorization" || strings.HasPrefix(lk, "x-remote-") {
				t.Fatalf("credential header %s left after stripping", k)
			}
			if lk == "sec-websocket-protocol" {
				for _, v := range vs {
					for _, p := range strings.Split(v, ",") {
						if strings.HasPrefix(strings.ToLower(strings.TrimSpace(p)), websocketBearerPrefix) {
							t.Fatalf("bearer subprotocol left after stripping: %q", v)
						}
					}
				}
			}
		}
		if _, ok := websocketBearerToken(header); ok {
			t.Fatal("a WebSocket bearer token is still readable after stripping")
		}
	})
}
