package tunnel

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
)

// agentStreams starts the agent's stream server over a yamux session in
// front of an HTTPS API server of h, reached with the bearer token
// "agent-token", and returns the session's client end (the tunnel server's
// side).
func agentStreams(t *testing.T, h http.Handler) *yamux.Session {
	t.Helper()
	api := httptest.NewTLSServer(h)
	t.Cleanup(api.Close)
	cfg := &rest.Config{Host: api.URL, BearerToken: "agent-token", TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw})}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := newAgentMetrics(prometheus.NewRegistry(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := newForwarder(cfg, log, m)
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	ycfg := yamux.DefaultConfig()
	ycfg.LogOutput = io.Discard
	server, err := yamux.Server(c2, ycfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := yamux.Client(c1, ycfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var requests inflight
	ss := &streamServer{fwd: fwd, requests: &requests, ctx: ctx, slow: newHandoffListener(server)}
	srv := &http.Server{Handler: countRequests(&requests, fwd)}
	go ss.serve(server)
	go func() { _ = srv.Serve(ss.slow) }()
	t.Cleanup(func() { cancel(); client.Close(); server.Close(); srv.Close() })
	return client
}

// send writes raw on a new stream and reads one answer and its body.
func send(t *testing.T, s *yamux.Session, raw string) (*http.Response, string) {
	t.Helper()
	c, err := s.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	resp := sendOn(t, c, bufio.NewReader(c), raw)
	return resp, readBody(t, resp)
}

// sendOn writes raw on c and reads the answer's head from br.
func sendOn(t *testing.T, c net.Conn, br *bufio.Reader, raw string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read answer to %q: %v", strings.SplitN(raw, "\r\n", 2)[0], err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// upstreamHeaders is an API server that answers with the headers it got.
type upstreamHeaders struct {
	mu   sync.Mutex
	seen []http.Header
}

func (h *upstreamHeaders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Clone())
	h.mu.Unlock()
	_, _ = fmt.Fprintf(w, "%s %s", r.Method, r.URL.RequestURI())
}

func (h *upstreamHeaders) last() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[len(h.seen)-1]
}

// The agent's own answering of short requests keeps the forwarder's
// rule: only the server's Impersonate-User and -Group pass, every other
// credential or identity header is dropped, also when a hop-by-hop
// Connection header names them.
func TestAgentStreamsStripCredentials(t *testing.T) {
	rec := &upstreamHeaders{}
	s := agentStreams(t, rec)
	for _, conn := range []string{"", "Connection: Impersonate-User, Impersonate-Group\r\n"} {
		raw := "GET /api/v1/namespaces?limit=1 HTTP/1.1\r\nHost: agent.c1\r\n" + conn +
			"Impersonate-User: meshfleet:alice\r\nImpersonate-Group: meshfleet:team\r\n" +
			"Authorization: Bearer stolen\r\nProxy-Authorization: Basic c3RvbGVu\r\n" +
			"Impersonate-Uid: 0\r\nImpersonate-Extra-Scopes: all\r\n" +
			"X-Remote-User: system:admin\r\nX-Remote-Group: system:masters\r\nX-Remote-Extra-A: b\r\n" +
			"Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.c3RvbGVu\r\n" +
			"X-Forwarded-For: 1.2.3.4\r\n\r\n"
		resp, body := send(t, s, raw)
		if resp.StatusCode != http.StatusOK || body != "GET /api/v1/namespaces?limit=1" {
			t.Fatalf("answer %s %q", resp.Status, body)
		}
		h := rec.last()
		if got := h.Get("Authorization"); got != "Bearer agent-token" {
			t.Errorf("API server got Authorization %q, want the agent's own token", got)
		}
		if got := h.Values("Impersonate-User"); len(got) != 1 || got[0] != "meshfleet:alice" {
			t.Errorf("Impersonate-User %v", got)
		}
		if got := h.Values("Impersonate-Group"); len(got) != 1 || got[0] != "meshfleet:team" {
			t.Errorf("Impersonate-Group %v", got)
		}
		for k := range h {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-remote-") || lk == "proxy-authorization" || lk == "impersonate-uid" ||
				strings.HasPrefix(lk, "impersonate-extra-") || lk == "sec-websocket-protocol" || lk == "x-forwarded-for" {
				t.Errorf("API server got %s: %v (Connection %q)", k, h.Values(k), conn)
			}
		}
	}
}

// Requests the agent does not answer itself reach the forwarder with the
// bytes already read: a request without Impersonate-User is refused, a
// body and a large head pass, and so does a bare-LF request.
func TestAgentStreamsHandOff(t *testing.T) {
	rec := &upstreamHeaders{}
	s := agentStreams(t, rec)
	resp, _ := send(t, s, "GET /api HTTP/1.1\r\nHost: agent.c1\r\n\r\n")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no Impersonate-User: %s, want 403", resp.Status)
	}
	resp, body := send(t, s, "POST /api/v1/x HTTP/1.1\r\nHost: agent.c1\r\nImpersonate-User: u\r\nContent-Length: 2\r\n\r\nhi")
	if resp.StatusCode != http.StatusOK || body != "POST /api/v1/x" {
		t.Errorf("POST: %s %q", resp.Status, body)
	}
	big := "GET /big HTTP/1.1\r\nHost: agent.c1\r\nImpersonate-User: u\r\nX-Big: " + strings.Repeat("a", 3*streamHeadBuffer) + "\r\n\r\n"
	resp, body = send(t, s, big)
	if resp.StatusCode != http.StatusOK || body != "GET /big" {
		t.Errorf("large head: %s %q", resp.Status, body)
	}
	resp, body = send(t, s, "GET /lf HTTP/1.1\nHost: agent.c1\nImpersonate-User: u\n\n")
	if resp.StatusCode != http.StatusOK || body != "GET /lf" {
		t.Errorf("bare LF: %s %q", resp.Status, body)
	}
	if got := rec.last().Get("Authorization"); got != "Bearer agent-token" {
		t.Errorf("handed-off request: Authorization %q", got)
	}
}

// Answers keep their framing: known length, chunked (each piece as it
// comes), HEAD and 204 without body, several requests on one stream, and
// a body cut short by the API server ends the stream instead of looking
// whole.
func TestAgentStreamsFraming(t *testing.T) {
	piece := make(chan struct{})
	s := agentStreams(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			_, _ = io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			<-piece
			_, _ = io.WriteString(w, "second")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/cut":
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "short")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		}
	}))
	const h = " HTTP/1.1\r\nHost: agent.c1\r\nImpersonate-User: u\r\n\r\n"
	c, err := s.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for range 3 {
		resp := sendOn(t, c, br, "GET /fixed"+h)
		if b := readBody(t, resp); resp.ContentLength != 5 || b != "hello" {
			t.Fatalf("fixed: length %d body %q", resp.ContentLength, b)
		}
	}
	resp := sendOn(t, c, br, "HEAD /fixed"+h)
	if resp.ContentLength != 5 {
		t.Errorf("HEAD: length %d", resp.ContentLength)
	}
	resp = sendOn(t, c, br, "GET /empty"+h)
	if b := readBody(t, resp); resp.StatusCode != http.StatusNoContent || b != "" {
		t.Errorf("204: %s %q", resp.Status, b)
	}
	resp = sendOn(t, c, br, "GET /chunked"+h)
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("chunked: first piece %q, %v (not sent before the second was written?)", first, err)
	}
	close(piece)
	if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "second" {
		t.Fatalf("chunked: rest %q, %v", rest, err)
	}
	if _, err := io.WriteString(c, "GET /cut"+h); err != nil {
		t.Fatal(err)
	}
	// Either no answer at all or a body that fails: never a whole one.
	if resp, err := http.ReadResponse(br, nil); err == nil {
		if b, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("cut-short body read whole: %q", b)
		}
	}
}
