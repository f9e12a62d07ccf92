package remoteistio

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// attempts counts the round trips it passes on and runs onAttempt before
// each.
type attempts struct {
	next      http.RoundTripper
	n         atomic.Int32
	onAttempt func(n int32)
}

func (a *attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	a.onAttempt(a.n.Add(1))
	return a.next.RoundTrip(req)
}

// TestRetryUnsent: a write refused at connect (nothing sent) is sent again
// once the server listens, body intact and applied once; a request whose
// headers went out is never sent twice.
func TestRetryUnsent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the server starts
	var mu sync.Mutex
	var bodies []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	})}
	t.Cleanup(func() { srv.Close() })
	tr := &http.Transport{}
	start := sync.OnceFunc(func() {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			return
		}
		go func() { _ = srv.Serve(l) }()
	})
	a := &attempts{next: tr, onAttempt: func(n int32) {
		if n == 3 {
			start()
		}
	}}
	req, _ := http.NewRequest(http.MethodPatch, "http://"+addr+"/x", strings.NewReader("patch-body"))
	resp, err := (retryUnsent{next: a, window: 10 * time.Second}).RoundTrip(req)
	if err != nil {
		t.Fatalf("refused twice, then served: %v", err)
	}
	resp.Body.Close()
	mu.Lock()
	if len(bodies) != 1 || bodies[0] != "patch-body" {
		t.Errorf("server got %q, want the body once", bodies)
	}
	mu.Unlock()
	if n := a.n.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}

	// Headers written, then the connection dies: not sent again.
	cut, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cut.Close() })
	go func() {
		for {
			c, err := cut.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			_, _ = c.Read(buf)
			c.Close()
		}
	}()
	b := &attempts{next: &http.Transport{}, onAttempt: func(int32) {}}
	req, _ = http.NewRequest(http.MethodPost, "http://"+cut.Addr().String()+"/x", strings.NewReader("once"))
	if _, err := (retryUnsent{next: b, window: 10 * time.Second}).RoundTrip(req); err == nil {
		t.Fatal("a cut connection answered")
	}
	if n := b.n.Load(); n != 1 {
		t.Errorf("sent %d times after its headers went out, want once", n)
	}
}
