package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// backendSeen is what the fake API server reports about a request.
type backendSeen struct {
	Path          string   `json:"path"`
	Authorization string   `json:"authorization"`
	User          string   `json:"user"`
	Groups        []string `json:"groups"`
}

// newBackend is a fake API server: /echo reports what it saw, /stream
// writes a line every 20ms until the client leaves, and Upgrade: echo
// requests are switched and echoed back.
func newBackend(t *testing.T) (*httptest.Server, *rest.Config) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(backendSeen{
			Path: r.URL.Path, Authorization: r.Header.Get("Authorization"),
			User: r.Header.Get("Impersonate-User"), Groups: r.Header.Values("Impersonate-Group"),
		})
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(conn, brw)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, &rest.Config{Host: srv.URL, BearerToken: "agent-token", TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
}

type env struct {
	pki      *testPKI
	server   *testServer
	upstream *rest.Config
	client   *http.Client
}

func newEnv(t *testing.T, agents int) *env {
	t.Helper()
	p := newTestPKI(t, "c1", "c2")
	_, upstream := newBackend(t)
	ts := startTestServer(t, p, ServerOptions{})
	for range agents {
		startTestAgent(t, p, "c1", p.agentCert(t, "c1", "c1"), upstream, ts.agentURL)
	}
	waitAgents(t, ts.Server, "c1", agents)
	certPEM, keyPEM := p.clientCert(t, "alice", "dev", "ops")
	hc, err := rest.HTTPClientFor(ts.callerConfig(p, "c1", certPEM, keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return &env{pki: p, server: ts, upstream: upstream, client: hc}
}

func (e *env) get(t *testing.T, path string) (int, backendSeen) {
	t.Helper()
	resp, err := e.client.Get(e.server.apiURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var seen backendSeen
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, seen
}

func TestProxyImpersonatesCaller(t *testing.T) {
	e := newEnv(t, 1)
	code, seen := e.get(t, "/clusters/c1/echo/x%2Fy")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	want := backendSeen{Path: "/echo/x/y", Authorization: "Bearer agent-token", User: "meshfleet:alice", Groups: []string{"meshfleet:dev", "meshfleet:ops"}}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("backend saw %+v, want %+v", seen, want)
	}
}

func TestProxyRefusals(t *testing.T) {
	e := newEnv(t, 1)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pki.roots}}}
	tests := []struct {
		name   string
		client *http.Client
		path   string
		header http.Header
		want   int
	}{
		{"no credentials", anon, "/clusters/c1/echo/", nil, http.StatusUnauthorized},
		{"token but no TokenReview", anon, "/clusters/c1/echo/", http.Header{"Authorization": {"Bearer x"}}, http.StatusUnauthorized},
		{"caller impersonates", e.client, "/clusters/c1/echo/", http.Header{"Impersonate-User": {"admin"}}, http.StatusForbidden},
		{"cluster without agent", e.client, "/clusters/c2/echo/", nil, http.StatusServiceUnavailable},
		{"not a cluster path", e.client, "/api/v1/pods", nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.server.apiURL+tt.path, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if !strings.Contains(string(body), `"kind":"Status"`) {
				t.Errorf("body is not a Kubernetes Status: %s", body)
			}
		})
	}
}

func TestAgentWithForeignClusterIsRejected(t *testing.T) {
	e := newEnv(t, 1)
	// A certificate from c2's intermediate that claims c1.
	a := startTestAgent(t, e.pki, "c1", e.pki.agentCert(t, "c1", "c2"), e.upstream, e.server.agentURL)
	// A c2 certificate used by an agent that says it serves c1.
	b := startTestAgent(t, e.pki, "c1", e.pki.agentCert(t, "c2", "c2"), e.upstream, e.server.agentURL)
	for _, ag := range []*testAgent{a, b} {
		err := waitRejected(t, ag)
		var rej *RejectedError
		if !errors.As(err, &rej) || rej.Code != http.StatusForbidden {
			t.Errorf("agent error = %v, want a 403 rejection", err)
		}
	}
	if n := len(e.server.Agents("c1")); n != 1 {
		t.Errorf("c1 has %d agents, want only the legitimate one", n)
	}
}

func waitRejected(t *testing.T, a *testAgent) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := a.Status().LastError; err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("agent was never rejected")
	return nil
}

func TestUpgradeIsSpliced(t *testing.T) {
	e := newEnv(t, 1)
	certPEM, keyPEM := e.pki.clientCert(t, "alice")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(e.server.apiURL, "https://"),
		&tls.Config{RootCAs: e.pki.roots, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /clusters/c1/upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"hello\n", strings.Repeat("x", 100_000) + "\n"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}
}

func TestStreamDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t, 1)
	// A stream nobody reads: its window fills and its agent-side writer
	// blocks, but other requests still pass.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.server.apiURL+"/clusters/c1/stream", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if code, _ := e.get(t, "/clusters/c1/echo/"); code != http.StatusOK {
				t.Errorf("status %d", code)
			}
		})
	}
	wg.Wait()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "line ") {
		t.Errorf("stream: %q, %v", line, err)
	}
}

func TestRequestsSpreadAndMoveOffDeadAgent(t *testing.T) {
	p := newTestPKI(t, "c1")
	_, upstream := newBackend(t)
	ts := startTestServer(t, p, ServerOptions{})
	a1 := startTestAgent(t, p, "c1", p.agentCert(t, "c1", "c1"), upstream, ts.agentURL)
	startTestAgent(t, p, "c1", p.agentCert(t, "c1", "c1"), upstream, ts.agentURL)
	waitAgents(t, ts.Server, "c1", 2)
	certPEM, keyPEM := p.clientCert(t, "alice")
	hc, err := rest.HTTPClientFor(ts.callerConfig(p, "c1", certPEM, keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{pki: p, server: ts, client: hc}
	// Concurrent requests, so that "fewest in flight" has to spread them.
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() { e.get(t, "/clusters/c1/echo/") })
	}
	wg.Wait()
	for _, a := range ts.Agents("c1") {
		if a.Served == 0 {
			t.Errorf("agent %s served no request: %+v", a.ID, ts.Agents("c1"))
		}
	}
	a1.stop()
	for i := range 20 {
		if code, _ := e.get(t, "/clusters/c1/echo/"); code != http.StatusOK {
			t.Fatalf("request %d after the agent died: status %d", i, code)
		}
	}
	if rtt, ok := ts.RTT("c1"); !ok || rtt <= 0 {
		t.Errorf("RTT = %v, %v; want a measurement", rtt, ok)
	}
}
