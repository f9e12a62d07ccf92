//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/pkg/xds"
)

// localityStack is one API server with Istio's CRDs, an istiod, and (when
// asked) meshfleet's locality server feeding istiod over MCP-over-xDS.
type localityStack struct {
	*stack
	xds     *xds.Server
	xdsAddr string
}

// startLocalityStack is startStack with, when policy is not nil, the
// locality server started first (watching the cluster) and istiod's
// MeshConfig listing it in configSources ahead of k8s://.
func startLocalityStack(t *testing.T, name string, policy *locality.Policy) *localityStack {
	t.Helper()
	ls := &localityStack{stack: startCluster(t, name)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mesh := "localityLbSetting:\n  enabled: true\n"
	if policy != nil {
		srvCtx, stop := context.WithCancel(context.Background())
		t.Cleanup(stop)
		var srv *xds.Server
		w, err := topology.NewWatcher(map[string]*rest.Config{name: ls.cluster.Config}, topology.WatcherOptions{
			OnChange: func() {
				if srv != nil {
					srv.Notify()
				}
			},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		p := *policy
		srv, err = xds.NewServer(xds.Options{
			Snapshot: w.Snapshot, Policy: func() locality.Policy { return p },
			Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		// The informers live as long as the server (srvCtx), not the start-up ctx.
		w.Start(srvCtx)
		if err := w.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Run(srvCtx, l) }()
		ls.xds, ls.xdsAddr = srv, l.Addr().String()
		mesh += fmt.Sprintf("configSources:\n- address: xds://%s\n- address: k8s://\n", ls.xdsAddr)
		t.Logf("meshfleet locality server on %s", ls.xdsAddr)
	}
	ls.startIstiod(t, mesh)
	return ls
}

// testLogWriter sends log lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
