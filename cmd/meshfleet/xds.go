package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/pkg/xds"
	"github.com/meshfleet/meshfleet/pkg/xds/members"
	"github.com/meshfleet/meshfleet/pkg/xds/rtt"
)

func newXDSCommand() *cobra.Command {
	var (
		clusters              []string
		addr, debugAddr       string
		policyFile, domain    string
		debounce, maxDebounce time.Duration
		nackBackoff           time.Duration
		meshKubeconfig        string
		meshOpts              members.Options
		tunnelURL, tunnelCA   string
		tunnelMetrics         string
		tunnelToken           string
		rttInterval           time.Duration
		primaryCluster        string
	)
	cmd := &cobra.Command{
		Use:   "xds",
		Short: "Serve istiod locality-aware DestinationRules over MCP-over-xDS (configSources: xds://<addr>)",
		Long: `Watches Nodes, Services and EndpointSlices in every member cluster and serves
istiod DestinationRules with localityLbSetting (failover to the nearest region)
and outlier detection. Point istiod at it with MeshConfig
  configSources: [{address: "xds://<addr>"}, {address: "k8s://"}]
The member clusters come from the mesh (--mesh-kubeconfig: the primary's Istio
resource and its RemoteIstio resources, followed as they are added and removed;
the Istio resource's spec.localityLB.failover is the explicit failover order),
or are given statically (--cluster NAME=KUBECONFIG, repeated).
With --tunnel-metrics, the round-trip times the tunnel server measures from the
primary cluster to the others order the failover regions nearest first, after
any explicit order and before the default one.
The debug address serves /debug/locality (per service: the rule and why) and /metrics.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			if (meshKubeconfig == "") == (len(clusters) == 0) {
				return errors.New("give the member clusters either from the mesh (--mesh-kubeconfig PRIMARY_KUBECONFIG) or statically (--cluster NAME=KUBECONFIG, repeated), not both")
			}
			if (tunnelURL == "") != (tunnelCA == "") || (tunnelURL != "" && meshKubeconfig == "") {
				return errors.New("--tunnel-url and --tunnel-ca-file go together, with --mesh-kubeconfig")
			}
			if tunnelMetrics != "" && meshKubeconfig == "" && primaryCluster == "" {
				return errors.New("--tunnel-metrics with --cluster needs --primary-cluster NAME: the cluster the tunnel server runs in, whose region the RTTs are measured from")
			}
			if tunnelMetrics != "" {
				if u, err := url.Parse(tunnelMetrics); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("--tunnel-metrics %q: want the tunnel server's metrics URL, e.g. http://meshfleet-tunnel.istio-system:9090/metrics", tunnelMetrics)
				}
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
			// Watchers may report changes before the server exists.
			var current atomic.Pointer[xds.Server]
			notify := func() {
				if srv := current.Load(); srv != nil {
					srv.Notify()
				}
			}
			policyFn := func() locality.Policy { return policy }
			var poller *rtt.Poller
			var tracker *rtt.Tracker
			if tunnelMetrics != "" {
				poller = &rtt.Poller{URL: tunnelMetrics, Interval: rttInterval, Log: log}
				tracker = &rtt.Tracker{RTT: poller.RTTs, Notify: notify}
				poller.OnPoll = tracker.Check
				if primaryCluster != "" {
					tracker.SetPrimary(primaryCluster)
				}
			}
			var cfgs map[string]*rest.Config
			var follower *members.Follower
			if meshKubeconfig != "" {
				primary, err := loadKubeconfig(meshKubeconfig)
				if err != nil {
					return fmt.Errorf("--mesh-kubeconfig: %w", err)
				}
				if tunnelURL != "" {
					ca, err := os.ReadFile(tunnelCA)
					if err != nil {
						return fmt.Errorf("--tunnel-ca-file: %w", err)
					}
					meshOpts.Tunnel = &members.Tunnel{URL: tunnelURL, CAData: ca, TokenFile: tunnelToken}
				}
				follower = &members.Follower{Base: policy, Notify: notify, Log: log}
				if len(policy.Failover) > 0 {
					log.Info("--policy-file sets a failover order; the Istio resource's spec.localityLB.failover wins whenever it sets one")
				}
				onMesh := follower.OnChange
				if tracker != nil && primaryCluster == "" {
					onMesh = func(m *members.Mesh) {
						tracker.SetPrimary(primaryMember(m))
						follower.OnChange(m)
					}
				}
				mw, err := members.NewWatcher(primary, meshOpts, log, onMesh)
				if err != nil {
					return err
				}
				mw.Start(ctx)
				mctx, cancel := context.WithTimeout(ctx, time.Minute)
				mesh, err := mw.Current(mctx)
				cancel()
				if err != nil {
					return fmt.Errorf("--mesh-kubeconfig: %w", err)
				}
				cfgs = mesh.Configs()
				policyFn = follower.Policy
			} else {
				var err error
				if cfgs, err = parseClusters(clusters); err != nil {
					return err
				}
				if _, ok := cfgs[primaryCluster]; primaryCluster != "" && !ok {
					return fmt.Errorf("--primary-cluster %s is none of the --cluster names", primaryCluster)
				}
			}
			w, err := topology.NewWatcher(cfgs, topology.WatcherOptions{Domain: domain, Logger: log, OnChange: notify})
			if err != nil {
				return err
			}
			snapshotFn := w.Snapshot
			if tracker != nil {
				// Explicit order first, then measured RTT, then the default.
				snapshotFn, policyFn = tracker.Snapshot(snapshotFn), tracker.Policy(policyFn)
			}
			srv, err := xds.NewServer(xds.Options{
				Snapshot: snapshotFn, Policy: policyFn,
				Debounce: debounce, MaxDebounce: maxDebounce, NACKBackoff: nackBackoff,
				Logger: log, Registerer: prometheus.DefaultRegisterer,
			})
			if err != nil {
				return err
			}
			current.Store(srv)
			w.Start(ctx)
			if poller != nil {
				go poller.Run(ctx)
			}
			syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if err := w.WaitForSync(syncCtx); err != nil {
				return err
			}
			if follower != nil {
				// From now on RemoteIstios added or removed change the clusters.
				follower.Attach(w)
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
	f.StringVar(&meshKubeconfig, "mesh-kubeconfig", "", "kubeconfig of the primary: members are its Istio resource's cluster and its RemoteIstios' clusters, followed as they change")
	f.StringVar(&meshOpts.Namespace, "namespace", "istio-system", "namespace of the Istio and RemoteIstio resources (with --mesh-kubeconfig)")
	f.StringVar(&meshOpts.Istio, "istio", "", "name of the Istio resource (with --mesh-kubeconfig); default: the only (oldest) one in --namespace")
	f.StringVar(&tunnelURL, "tunnel-url", "", "URL of the tunnel server; RemoteIstios without a kubeconfig Secret are reached at <url>/clusters/<name> with --mesh-kubeconfig's credentials")
	f.StringVar(&tunnelCA, "tunnel-ca-file", "", "CA certificate that verifies the tunnel server (with --tunnel-url)")
	f.StringVar(&tunnelToken, "tunnel-token-file", "/var/run/secrets/meshfleet.io/tunnel/token", "the locality server's token for the tunnel's audience (a projected service-account token, audience meshfleet-tunnel), presented to the tunnel server (with --tunnel-url)")
	f.StringArrayVar(&clusters, "cluster", nil, "static member cluster as NAME=KUBECONFIG (repeat for each cluster), instead of --mesh-kubeconfig")
	f.StringVar(&addr, "addr", ":15020", "address serving ADS (MCP-over-xDS) to istiod, plain text")
	f.StringVar(&debugAddr, "debug-addr", ":9092", "address serving /debug/locality and /metrics (empty disables)")
	f.StringVar(&policyFile, "policy-file", "", "YAML locality policy: failover [{from, to}], distances [{from, to, rtt}], outlierDetection")
	f.StringVar(&domain, "domain", "cluster.local", "clusters' DNS domain")
	f.DurationVar(&debounce, "debounce", xds.DefaultDebounce, "quiet period that ends a burst of changes before a push")
	f.DurationVar(&maxDebounce, "max-debounce", xds.DefaultMaxDebounce, "longest a continuous burst of changes delays a push")
	f.StringVar(&tunnelMetrics, "tunnel-metrics", "", "URL of the tunnel server's /metrics (e.g. http://meshfleet-tunnel.istio-system:9090/metrics): its meshfleet_tunnel_agent_rtt_seconds order the failover regions nearest first")
	f.DurationVar(&rttInterval, "tunnel-metrics-interval", rtt.DefaultInterval, "how often --tunnel-metrics is read")
	f.StringVar(&primaryCluster, "primary-cluster", "", "cluster the tunnel server runs in, whose region RTTs are measured from (with --tunnel-metrics; default with --mesh-kubeconfig: the Istio resource's cluster)")
	f.DurationVar(&nackBackoff, "nack-backoff", xds.DefaultNACKBackoff, "wait before re-sending a response istiod rejected")
	return cmd
}

// primaryMember returns the name of the mesh's primary cluster ("" if none).
func primaryMember(m *members.Mesh) string {
	for _, mb := range m.Members {
		if mb.Connection == members.ConnectionPrimary {
			return mb.Name
		}
	}
	return ""
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
