package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/pkg/xds"
)

func newXDSCommand() *cobra.Command {
	var (
		clusters              []string
		addr, debugAddr       string
		policyFile, domain    string
		debounce, maxDebounce time.Duration
		nackBackoff           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "xds",
		Short: "Serve istiod locality-aware DestinationRules over MCP-over-xDS (configSources: xds://<addr>)",
		Long: `Watches Nodes, Services and EndpointSlices in every member cluster and serves
istiod DestinationRules with localityLbSetting (failover to the nearest region)
and outlier detection. Point istiod at it with MeshConfig
  configSources: [{address: "xds://<addr>"}, {address: "k8s://"}]
The debug address serves /debug/locality (per service: the rule and why) and /metrics.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			cfgs, err := parseClusters(clusters)
			if err != nil {
				return err
			}
			policy := locality.Policy{}
			if policyFile != "" {
				raw, err := os.ReadFile(policyFile)
				if err != nil {
					return fmt.Errorf("--policy-file: %w", err)
				}
				if err := yaml.UnmarshalStrict(raw, &policy); err != nil {
					return fmt.Errorf("--policy-file %s: %w (fields: failover, distances, outlierDetection)", policyFile, err)
				}
				if err := policy.Validate(); err != nil {
					return fmt.Errorf("--policy-file %s: %w", policyFile, err)
				}
			}
			ctx := signalContext()
			var srv *xds.Server
			w, err := topology.NewWatcher(cfgs, topology.WatcherOptions{
				Domain: domain, Logger: log,
				OnChange: func() {
					if srv != nil {
						srv.Notify()
					}
				},
			})
			if err != nil {
				return err
			}
			srv, err = xds.NewServer(xds.Options{
				Snapshot: w.Snapshot, Policy: func() locality.Policy { return policy },
				Debounce: debounce, MaxDebounce: maxDebounce, NACKBackoff: nackBackoff,
				Logger: log, Registerer: prometheus.DefaultRegisterer,
			})
			if err != nil {
				return err
			}
			w.Start(ctx)
			syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if err := w.WaitForSync(syncCtx); err != nil {
				return err
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--addr %s: %w", addr, err)
			}
			serveDebug(ctx, debugAddr, srv, log)
			log.Info("serving MCP-over-xDS", "addr", l.Addr().String(), "clusters", len(cfgs))
			return srv.Run(ctx, l)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&clusters, "cluster", nil, "member cluster as NAME=KUBECONFIG (repeat for each cluster)")
	f.StringVar(&addr, "addr", ":15020", "address serving ADS (MCP-over-xDS) to istiod, plain text")
	f.StringVar(&debugAddr, "debug-addr", ":9092", "address serving /debug/locality and /metrics (empty disables)")
	f.StringVar(&policyFile, "policy-file", "", "YAML locality policy: failover [{from, to}], distances [{from, to, rtt}], outlierDetection")
	f.StringVar(&domain, "domain", "cluster.local", "clusters' DNS domain")
	f.DurationVar(&debounce, "debounce", xds.DefaultDebounce, "quiet period that ends a burst of changes before a push")
	f.DurationVar(&maxDebounce, "max-debounce", xds.DefaultMaxDebounce, "longest a continuous burst of changes delays a push")
	f.DurationVar(&nackBackoff, "nack-backoff", xds.DefaultNACKBackoff, "wait before re-sending a response istiod rejected")
	return cmd
}

// parseClusters turns NAME=KUBECONFIG flags into client configs.
func parseClusters(flags []string) (map[string]*rest.Config, error) {
	if len(flags) == 0 {
		return nil, errors.New("no member cluster: pass --cluster NAME=KUBECONFIG at least once")
	}
	out := map[string]*rest.Config{}
	for _, f := range flags {
		name, path, ok := strings.Cut(f, "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("--cluster %q: want NAME=KUBECONFIG, e.g. --cluster east=/etc/meshfleet/east.kubeconfig", f)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--cluster %q: cluster %s is given twice", f, name)
		}
		cfg, err := loadKubeconfig(path)
		if err != nil {
			return nil, fmt.Errorf("--cluster %s: %w", name, err)
		}
		out[name] = cfg
	}
	return out, nil
}

func serveDebug(ctx context.Context, addr string, srv *xds.Server, log *slog.Logger) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.Handle("/debug/locality", srv.DebugHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	hs := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug server failed", "addr", addr, "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
}
