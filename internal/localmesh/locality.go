package localmesh

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
)

// startLocality runs the locality server over every cluster of the mesh
// until ctx ends: it writes its rules into the primary's namespace, where
// istiod reads them, and serves its debug view on ln.
func (m *Mesh) startLocality(ctx context.Context, ln net.Listener, namespace, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { _ = f.Close() })
	log := slog.New(slog.NewJSONHandler(f, nil))
	cfgs := map[string]*rest.Config{}
	for _, c := range m.Clusters {
		cfgs[c.Name] = c.Config
	}
	srv, err := pipeline.New(pipeline.Options{Clusters: cfgs, PrimaryCluster: m.Primary().Name, Namespace: namespace,
		Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	go func() { _ = srv.Run(ctx) }()
	hs := &http.Server{Handler: srv.DebugHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = hs.Close() }()
	go func() { _ = hs.Serve(ln) }()
	return nil
}
