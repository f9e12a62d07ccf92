package tunnel

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestUpstreamGate: the gate asks /readyz only after a failure, and lets
// requests through again once /readyz is ok.
func TestUpstreamGate(t *testing.T) {
	var calls atomic.Int32
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/readyz" {
			t.Errorf("gate asked %s, want /readyz", r.URL.Path)
		}
		if !ready.Load() {
			http.Error(w, "[-]informer-sync failed", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	g := &upstreamGate{client: srv.Client(), readyzURL: srv.URL + "/readyz", log: slog.New(slog.DiscardHandler)}
	ctx := t.Context()

	if err := g.ready(ctx); err != nil || calls.Load() != 0 {
		t.Fatalf("before any failure: ready = %v after %d /readyz calls, want nil after none", err, calls.Load())
	}
	g.markDown(errors.New("connection refused"))
	if err := g.ready(ctx); err == nil {
		t.Fatal("ready while /readyz fails")
	}
	if err := g.ready(ctx); err == nil || calls.Load() != 1 {
		t.Fatalf("second look within the recheck interval: %v after %d /readyz calls, want the last error after 1", err, calls.Load())
	}
	ready.Store(true)
	g.lastCheck = g.lastCheck.Add(-upstreamRecheck)
	if err := g.ready(ctx); err != nil {
		t.Fatalf("after /readyz is ok: %v", err)
	}
	n := calls.Load()
	if err := g.ready(ctx); err != nil || calls.Load() != n {
		t.Fatalf("once ready: %v after %d more /readyz calls, want nil after none", err, calls.Load()-n)
	}
}
