package tunnel

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
)

// DefaultDrainTimeout bounds how long a stopping server or agent lets the
// requests in flight finish before it closes its sessions. Long-running
// requests (watches, logs -f, exec) are not waited for: their clients
// re-establish them.
const DefaultDrainTimeout = 5 * time.Second

// longRunning reports whether r stays open for as long as the caller wants
// (a watch, a followed log, an upgraded connection) rather than ending with
// one answer.
func longRunning(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" || strings.Contains(r.URL.Path, "/watch/") {
		return true
	}
	q := r.URL.Query()
	for _, k := range []string{"watch", "follow"} {
		if v := q.Get(k); v != "" && v != "false" && v != "0" {
			return true
		}
	}
	return false
}

// inflight counts the requests in flight that end by themselves.
type inflight struct{ n atomic.Int64 }

// track counts r while it is served, unless it is long-running; call the
// returned func when it ends.
func (c *inflight) track(r *http.Request) func() {
	if longRunning(r) {
		return func() {}
	}
	c.n.Add(1)
	return func() { c.n.Add(-1) }
}

// wait returns once no counted request is in flight, or after d.
func (c *inflight) wait(d time.Duration) {
	deadline := time.Now().Add(d)
	for c.n.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// countRequests wraps h to count its requests in c.
func countRequests(c *inflight, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer c.track(r)()
		h.ServeHTTP(w, r)
	})
}

// sessionListener serves the streams of a yamux session to an HTTP server;
// closing it stops nothing, so that the session outlives http.Server's
// Shutdown and its streams in flight can finish.
type sessionListener struct{ *yamux.Session }

func (sessionListener) Close() error { return nil }

// drainSession stops a session gracefully: the peer may open no new stream
// (yamux GoAway: the server then takes new requests to another agent),
// requests in flight finish (within timeout), then the session closes.
func drainSession(mux *yamux.Session, srv *http.Server, requests *inflight, timeout time.Duration) {
	_ = mux.GoAway()
	requests.wait(timeout)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(ctx) // idle streams
}
