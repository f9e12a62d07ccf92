package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
)

// testPool returns a connPool of TCP connections to srv and the number of
// connections it dialled.
func testPool(srv *httptest.Server) (*connPool, *atomic.Int32) {
	var dials atomic.Int32
	p := &connPool{name: "test", dial: func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}}
	return p, &dials
}

// yamuxPool returns a connPool of yamux streams to an HTTP/1.1 server of
// h on their other end, as between the tunnel server and an agent (where
// closing a stream only half-closes it), and the number of streams opened.
func yamuxPool(t *testing.T, h http.Handler) (*connPool, *atomic.Int32) {
	c1, c2 := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	server, err := yamux.Server(c2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := yamux.Client(c1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(sessionListener{server}) }()
	t.Cleanup(func() { client.Close(); server.Close(); srv.Close() })
	var dials atomic.Int32
	return &connPool{name: "test", dial: func(context.Context) (net.Conn, error) {
		dials.Add(1)
		return client.OpenStream()
	}}, &dials
}

func get(t *testing.T, p *connPool, ctx context.Context, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !direct(req) {
		t.Fatalf("direct(GET without body) = false")
	}
	return p.roundTrip(req)
}

func TestConnPoolReusesConnections(t *testing.T) {
	var parallel sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/together" {
			// Held until all are in, so each has a connection of its own.
			parallel.Done()
			parallel.Wait()
		}
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer srv.Close()
	p, dials := testPool(srv)
	for i := range 5 {
		resp, err := get(t, p, t.Context(), srv.URL+"/x")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello /x" {
			t.Fatalf("request %d: body %q", i, b)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("5 sequential requests dialled %d connections, want 1 (reused)", n)
	}
	// Connections the peer closed while idle (an agent draining) are
	// passed over, however many, and the request sent on a new one.
	const n = 8
	parallel.Add(n)
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := get(t, p, t.Context(), srv.URL+"/together")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(p.idle) != n {
		t.Fatalf("%d idle connections after %d parallel requests, want %d", len(p.idle), n, n)
	}
	srv.CloseClientConnections()
	resp, err := get(t, p, t.Context(), srv.URL+"/y")
	if err != nil {
		t.Fatalf("after the server closed %d idle connections: %v", n, err)
	}
	resp.Body.Close()
	p.closeIdle()
}

// A peer that never ends its answer (a hostile or stuck agent) must not
// hold the caller: closing the body early returns at once and the
// connection is not reused; a cancelled context ends a read in progress.
func TestConnPoolEndlessBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	endless := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			if _, err := w.Write([]byte(strings.Repeat("x", 1024))); err != nil {
				return
			}
			select {
			case <-release:
				return
			default:
			}
		}
	})
	t.Run("tcp", func(t *testing.T) {
		srv := httptest.NewServer(endless)
		defer srv.Close()
		p, dials := testPool(srv)
		endlessBody(t, p, dials, srv.URL)
	})
	t.Run("yamux", func(t *testing.T) {
		p, dials := yamuxPool(t, endless)
		endlessBody(t, p, dials, "http://agent.test/")
	})
}

func endlessBody(t *testing.T, p *connPool, dials *atomic.Int32, url string) {

	resp, err := get(t, p, t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = resp.Body.Read(make([]byte, 10))
	closed := make(chan struct{})
	go func() { resp.Body.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the body of an endless answer did not return")
	}
	if len(p.idle) != 0 {
		t.Errorf("a connection whose answer was not read to its end went back to the pool")
	}

	ctx, cancel := context.WithCancel(t.Context())
	resp, err = get(t, p, ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); readErr <- err }()
	cancel()
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("reading an endless body after cancel ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the request did not end the body read")
	}
	resp.Body.Close()
	if n := dials.Load(); n != 2 {
		t.Errorf("dialled %d connections, want 2 (neither reused)", n)
	}
}

// A caller that goes away while waiting for the answer's headers is
// answered with its context's error.
func TestConnPoolCancelBeforeAnswer(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-block
	}))
	defer func() { close(block); srv.Close() }()
	p, _ := testPool(srv)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := get(t, p, ctx, srv.URL)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want the context's deadline", err)
	}
}

func TestDirectRequests(t *testing.T) {
	for _, tc := range []struct {
		method, body, upgrade string
		want                  bool
	}{
		{"GET", "", "", true},
		{"HEAD", "", "", true},
		{"GET", "", "websocket", false},
		{"GET", "x", "", false},
		{"POST", "", "", false},
		{"DELETE", "", "", false},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, _ := http.NewRequest(tc.method, "http://agent/x", body)
		if tc.upgrade != "" {
			req.Header.Set("Upgrade", tc.upgrade)
		}
		if got := direct(req); got != tc.want {
			t.Errorf("direct(%s body %q upgrade %q) = %v, want %v", tc.method, tc.body, tc.upgrade, got, tc.want)
		}
	}
}

// An agent that sent GoAway (stopping) gets no new request, not even on a
// stream the server keeps idle to it: the request fails as errAgentGone,
// which the server takes to another agent.
func TestStoppingAgentGetsNoRequestOnIdleStreams(t *testing.T) {
	c1, c2 := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	agentMux, err := yamux.Server(c2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	serverMux, err := yamux.Client(c1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = srv.Serve(sessionListener{agentMux}) }()
	sess := newAgentSession("c1", "a1", "test", serverMux, 16)
	t.Cleanup(func() { sess.close(); agentMux.Close(); srv.Close() })

	req, _ := http.NewRequest(http.MethodGet, "http://agent.c1/x", nil)
	resp, err := sess.roundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if len(sess.pool.idle) != 1 {
		t.Fatalf("%d idle streams after one request, want 1", len(sess.pool.idle))
	}
	if err := agentMux.GoAway(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !serverMux.RemoteGoAway(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server side never saw the agent's GoAway")
		}
	}
	resp, err = sess.roundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a request after the agent's GoAway was sent to it on an idle stream")
	}
	if !errors.Is(err, errAgentGone) {
		t.Errorf("error %v, want errAgentGone (so that another agent takes it)", err)
	}
}

// testMux returns the server's side of a yamux session to an agent, and
// the agent's side.
func testMux(t *testing.T) (server, agent *yamux.Session) {
	c1, c2 := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	agent, err := yamux.Server(c2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	server, err = yamux.Client(c1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); agent.Close() })
	return server, agent
}

// Among agents equally busy, a watch goes to the one connected last (the
// old ones go first in a rolling update), and no request goes to an agent
// that is stopping while another is left.
func TestPickAgent(t *testing.T) {
	r := newRegistry()
	now := time.Now()
	var agentMuxes []*yamux.Session
	var sessions []*agentSession
	for i, age := range []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute} {
		sm, am := testMux(t)
		s := newAgentSession("c1", fmt.Sprint("a", i), "test", sm, 16)
		s.connected = now.Add(-age)
		if _, ok := r.add(s, 16); !ok {
			t.Fatal("add")
		}
		agentMuxes, sessions = append(agentMuxes, am), append(sessions, s)
	}
	for range 5 {
		if got := r.pick("c1", nil, true); got != sessions[1] {
			t.Fatalf("watch went to %s, want the newest agent a1", got.id)
		}
	}
	sessions[1].inflight.Add(1)
	if got := r.pick("c1", nil, true); got != sessions[2] {
		t.Errorf("watch went to %s, want a2 (the newest of the least busy)", got.id)
	}
	sessions[1].inflight.Add(-1)
	if err := agentMuxes[1].GoAway(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !sessions[1].mux.RemoteGoAway(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("GoAway not seen")
		}
	}
	for range 6 {
		if got := r.pick("c1", nil, false); got == sessions[1] {
			t.Fatal("a request went to the stopping agent a1 while others are connected")
		}
	}
	if got := r.pick("c1", []*agentSession{sessions[0], sessions[2]}, false); got != sessions[1] {
		t.Errorf("with only the stopping agent left, pick = %v, want it (the request then fails as errAgentGone)", got)
	}
}
