//go:build e2e

package e2e

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// localityStack is one API server with Istio's CRDs, an istiod, and (when
// asked) meshfleet's locality server writing its DestinationRules into the
// API server, where istiod reads them with its ordinary k8s:// source.
type localityStack struct {
	*stack
	xds *localityServer
}

// startLocalityStack is startStack with, when policy is not nil, the
// locality server started over the cluster. istiod's MeshConfig names no
// config source: the rules come through the API server.
func startLocalityStack(t *testing.T, name string, policy *locality.Policy) *localityStack {
	t.Helper()
	ls := &localityStack{stack: startCluster(t, name)}
	if policy != nil {
		ls.xds = startLocalityServer(t, localityServerOptions{
			primary: ls.cluster.Config, clusters: map[string]*rest.Config{name: ls.cluster.Config}, policy: *policy})
	}
	ls.startIstiod(t, "localityLbSetting:\n  enabled: true\n")
	return ls
}

// localityServerOptions configure startLocalityServer.
type localityServerOptions struct {
	primary  *rest.Config            // where the rules are written
	clusters map[string]*rest.Config // member clusters, watched from the start
	policy   locality.Policy
	// configCluster is istiod's config cluster (topology.WatcherOptions).
	configCluster string
	// members, if set, is the member set instead of the watcher's (e.g. a
	// cluster that never syncs).
	members func(w *topology.Watcher) map[string]bool
}

// localityServer is a running locality server (topology watcher and rule
// writer), as `meshfleet locality` wires them; Stop ends both.
type localityServer struct {
	*rulesync.Server
	watcher *topology.Watcher
	reg     *prometheus.Registry
	stop    context.CancelFunc
	done    chan struct{}
}

// startLocalityServer starts a locality server; it stops at the end of
// the test, or earlier with Stop.
func startLocalityServer(t *testing.T, o localityServerOptions) *localityServer {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ls := &localityServer{reg: prometheus.NewRegistry(), stop: stop, done: make(chan struct{})}
	var srv atomic.Pointer[rulesync.Server]
	w, err := topology.NewWatcher(o.clusters, topology.WatcherOptions{
		OnChange: func() {
			if s := srv.Load(); s != nil {
				s.Notify()
			}
		},
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		ConfigCluster: o.configCluster,
	})
	if err != nil {
		t.Fatal(err)
	}
	members := w.Clusters
	if o.members != nil {
		members = func() map[string]bool { return o.members(w) }
	}
	p := o.policy
	s, err := rulesync.New(rulesync.Options{
		Config: o.primary, Snapshot: w.Snapshot, Members: members, Policy: func() locality.Policy { return p },
		Logger:     slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer: ls.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store(s)
	ls.Server, ls.watcher = s, w
	w.Start(ctx)
	go func() {
		defer close(ls.done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(ls.Stop)
	return ls
}

// Stop stops the server and waits until it has.
func (l *localityServer) Stop() {
	l.stop()
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
	}
}

// testLogWriter sends log lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
