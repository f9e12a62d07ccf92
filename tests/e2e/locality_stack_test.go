//go:build e2e

package e2e

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
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
			clusters: map[string]*rest.Config{name: ls.cluster.Config}, policy: *policy})
	}
	ls.startIstiod(t, "localityLbSetting:\n  enabled: true\n")
	return ls
}

// localityServerOptions configure startLocalityServer.
type localityServerOptions struct {
	clusters map[string]*rest.Config // member clusters, watched from the start
	policy   locality.Policy
	// primaryCluster is istiod's config cluster, where the rules are
	// written (the only cluster when empty).
	primaryCluster string
	// groupMin is the server's GroupMin (0: its default).
	groupMin int
}

// localityServer is a running locality server (pkg/locality/pipeline, as
// `meshfleet locality` wires it); Stop ends it.
type localityServer struct {
	*pipeline.Server
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan struct{}
}

// startLocalityServer starts a locality server; it stops at the end of
// the test, or earlier with Stop.
func startLocalityServer(t *testing.T, o localityServerOptions) *localityServer {
	t.Helper()
	ctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	ls := &localityServer{reg: prometheus.NewRegistry(), stop: stop, done: make(chan struct{})}
	s, err := pipeline.New(pipeline.Options{
		Clusters: o.clusters, PrimaryCluster: o.primaryCluster, Policy: o.policy, GroupMin: o.groupMin,
		Logger:     slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer: ls.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ls.Server = s
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
