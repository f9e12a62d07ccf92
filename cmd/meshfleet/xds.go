package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/meshfleet/meshfleet/pkg/locality/members"
	"github.com/meshfleet/meshfleet/pkg/locality/rtt"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

func newXDSCommand(logs *logFlags) *cobra.Command {
	var (
		clusters              []string
		debugAddr             string
		policyFile, domain    string
		debounce, maxDebounce time.Duration
		meshKubeconfig        string
		meshOpts              members.Options
		tunnelURL, tunnelCA   string
		tunnelMetrics         string
		tunnelToken           string
		rttInterval           time.Duration
		primaryCluster        string
		rulesNamespace        string
		leaderElect           bool
		leaseName             string
		inCluster             bool
	)
	cmd := &cobra.Command{
		Use:     "locality",
		Aliases: []string{"xds"},
		Short:   "Write locality-aware DestinationRules into the primary cluster, where istiod reads them",
		Long: `The locality server. Watches Nodes, Services and EndpointSlices in every member
cluster and writes DestinationRules with localityLbSetting (failover to the
nearest region) and outlier detection into the primary cluster (namespace
--rules-namespace), where istiod reads them as any other DestinationRule. istiod
never depends on this server: the rules last written stay in the API server.
The member clusters come from the mesh (--mesh-kubeconfig: the primary's Istio
resource and its RemoteIstio resources, followed as they are added and removed;
the Istio resource's spec.localityLB.failover is the explicit failover order),
or are given statically (--cluster NAME=KUBECONFIG, repeated; the rules go to
--primary-cluster).
With --tunnel-metrics, the round-trip times the tunnel server measures from the
primary cluster to the others order the failover regions nearest first, after
any explicit order and before the default one.
A member cluster that is unreachable never stops the server: until it has
synced once, the rules already written are kept as they are.
Several replicas may run: one writes, elected by a Lease (--leader-elect).
The writer publishes a small health summary (members and whether each synced,
rules managed and held, conflicts, last write, its identity) in the ConfigMap
meshfleet-locality-status of --rules-namespace, which meshctl status reads.
The debug address serves /debug/locality (per service: the rule and why; the
members and whether each synced), /metrics and /healthz, from the start.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(os.Stderr)
			if err != nil {
				return err
			}
			fromMesh := meshKubeconfig != "" || inCluster
			if fromMesh == (len(clusters) > 0) || (inCluster && meshKubeconfig != "") {
				return errors.New("give the member clusters either from the mesh (--in-cluster, or --mesh-kubeconfig PRIMARY_KUBECONFIG) or statically (--cluster NAME=KUBECONFIG, repeated), one of them")
			}
			if (tunnelURL == "") != (tunnelCA == "") || (tunnelURL != "" && !fromMesh) {
				return errors.New("--tunnel-url and --tunnel-ca-file go together, with --in-cluster or --mesh-kubeconfig")
			}
			if tunnelMetrics != "" {
				if u, err := url.Parse(tunnelMetrics); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("--tunnel-metrics %q: want the tunnel server's metrics URL, e.g. http://meshfleet-tunnel.istio-system:9090/metrics", tunnelMetrics)
				}
			}
			policy, err := readPolicy(policyFile)
			if err != nil {
				return err
			}
			ctx := signalContext()

			// The primary: where the rules are written.
			var primary *rest.Config
			var static map[string]*rest.Config
			if fromMesh {
				if primary, err = loadKubeconfig(meshKubeconfig); err != nil {
					return fmt.Errorf("--mesh-kubeconfig: %w", err)
				}
			} else {
				if static, err = parseClusters(clusters); err != nil {
					return err
				}
				if primaryCluster == "" && len(static) == 1 {
					for name := range static {
						primaryCluster = name
					}
				}
				if primary = static[primaryCluster]; primary == nil {
					return fmt.Errorf("--primary-cluster %q: name the --cluster whose API server istiod reads (the rules are written there)", primaryCluster)
				}
			}
			id, _ := os.Hostname()
			if p := os.Getenv("POD_NAME"); p != "" {
				id = p
			}
			var lease *rulesync.Lease
			if leaderElect {
				lease = &rulesync.Lease{Namespace: rulesNamespace, Name: leaseName, Identity: id}
			}

			// Stage 1, topology: member clusters → topology.Topology. The
			// watcher exists once the members are known (at once with
			// --cluster; with --mesh-kubeconfig, when the primary answers).
			var topo atomic.Pointer[topology.Watcher]
			snapshot := func() *topology.Topology {
				if w := topo.Load(); w != nil {
					return w.Snapshot()
				}
				return &topology.Topology{}
			}
			var unreachable func() []string // members the mesh names but cannot reach
			memberState := func() map[string]bool {
				out := map[string]bool{}
				if w := topo.Load(); w != nil {
					out = w.Clusters()
				}
				if unreachable != nil {
					for _, name := range unreachable() {
						out[name] = false
					}
				}
				return out
			}
			// Stage 2, translate (pure, pkg/locality), reads the policy: the
			// Istio resource's failover order, --policy-file, measured RTT.
			policyFn := func() locality.Policy { return policy }
			var srv atomic.Pointer[rulesync.Server]
			notify := func() {
				if s := srv.Load(); s != nil {
					s.Notify()
				}
			}
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
			// configCluster is where istiod reads DestinationRules and the
			// copy of each Service it uses: the primary.
			watch := func(cfgs map[string]*rest.Config, configCluster string) (*topology.Watcher, error) {
				w, err := topology.NewWatcher(cfgs, topology.WatcherOptions{Domain: domain, Logger: log, OnChange: notify, ConfigCluster: configCluster})
				if err != nil {
					return nil, err
				}
				w.Start(ctx)
				topo.Store(w)
				notify()
				return w, nil
			}
			if fromMesh {
				if tunnelURL != "" {
					ca, err := os.ReadFile(tunnelCA)
					if err != nil {
						return fmt.Errorf("--tunnel-ca-file: %w", err)
					}
					meshOpts.Tunnel = &members.Tunnel{URL: tunnelURL, CAData: ca, TokenFile: tunnelToken}
				}
				follower := &members.Follower{Base: policy, Notify: notify, Log: log}
				if len(policy.Failover) > 0 {
					log.Info("--policy-file sets a failover order; the Istio resource's spec.localityLB.failover wins whenever it sets one")
				}
				policyFn = follower.Policy
				unreachable = follower.Unreachable
				onMesh := func(m *members.Mesh) {
					if tracker != nil && primaryCluster == "" {
						tracker.SetPrimary(primaryMember(m))
					}
					follower.OnChange(m)
					if topo.Load() == nil {
						w, err := watch(m.Configs(), primaryMember(m))
						if err != nil {
							log.Error("cannot watch the member clusters; retrying on the next change of the mesh", "err", err)
							return
						}
						// From now on RemoteIstios added or removed change the clusters.
						follower.Attach(w)
					}
				}
				mw, err := members.NewWatcher(primary, meshOpts, log, onMesh)
				if err != nil {
					return err
				}
				mw.Start(ctx)
			} else if _, err := watch(static, primaryCluster); err != nil {
				return err
			}
			if tracker != nil {
				// Explicit order first, then measured RTT, then the default.
				snapshot, policyFn = tracker.Snapshot(snapshot), tracker.Policy(policyFn)
			}

			// Stage 3, write: rules → the primary's API server.
			s, err := rulesync.New(rulesync.Options{
				Config: primary, Namespace: rulesNamespace,
				Snapshot: snapshot, Policy: policyFn, Members: memberState,
				Debounce: debounce, MaxDebounce: maxDebounce, Lease: lease, Identity: id,
				Logger: log, Registerer: prometheus.DefaultRegisterer,
			})
			if err != nil {
				return err
			}
			srv.Store(s)
			serveDebug(ctx, debugAddr, s, log)
			if poller != nil {
				go poller.Run(ctx)
			}
			log.Info("writing locality DestinationRules", "primary", primary.Host, "namespace", rulesNamespace, "leaderElection", leaderElect)
			return s.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&inCluster, "in-cluster", false, "the primary is the cluster this pod runs in (its service account): members from the mesh, as with --mesh-kubeconfig")
	f.StringVar(&meshKubeconfig, "mesh-kubeconfig", "", "kubeconfig of the primary: members are its Istio resource's cluster and its RemoteIstios' clusters, followed as they change; the rules are written there")
	f.StringVar(&meshOpts.Namespace, "namespace", "istio-system", "namespace of the Istio and RemoteIstio resources (with --mesh-kubeconfig)")
	f.StringVar(&meshOpts.Istio, "istio", "", "name of the Istio resource (with --mesh-kubeconfig); default: the only (oldest) one in --namespace")
	f.StringVar(&tunnelURL, "tunnel-url", "", "URL of the tunnel server; RemoteIstios without a kubeconfig Secret are reached at <url>/clusters/<name> with --mesh-kubeconfig's credentials")
	f.StringVar(&tunnelCA, "tunnel-ca-file", "", "CA certificate that verifies the tunnel server (with --tunnel-url)")
	f.StringVar(&tunnelToken, "tunnel-token-file", "/var/run/secrets/meshfleet.io/tunnel/token", "the locality server's token for the tunnel's audience (a projected service-account token, audience meshfleet-tunnel), presented to the tunnel server (with --tunnel-url)")
	f.StringArrayVar(&clusters, "cluster", nil, "static member cluster as NAME=KUBECONFIG (repeat for each cluster), instead of --mesh-kubeconfig")
	f.StringVar(&rulesNamespace, "rules-namespace", rulesync.DefaultNamespace, "namespace of the primary that receives the generated DestinationRules (istiod's root namespace) and the Lease")
	f.BoolVar(&leaderElect, "leader-elect", true, "write only while holding the Lease --lease-name, so that several replicas may run")
	f.StringVar(&leaseName, "lease-name", rulesync.FieldManager, "name of the Lease in --rules-namespace that elects the writer")
	f.StringVar(&debugAddr, "debug-addr", ":9092", "address serving /debug/locality, /metrics and /healthz (empty disables)")
	f.StringVar(&policyFile, "policy-file", "", "YAML locality policy: failover [{from, to}], distances [{from, to, rtt}], outlierDetection")
	f.StringVar(&domain, "domain", "cluster.local", "clusters' DNS domain")
	f.DurationVar(&debounce, "debounce", rulesync.DefaultDebounce, "quiet period that ends a burst of changes before a write")
	f.DurationVar(&maxDebounce, "max-debounce", rulesync.DefaultMaxDebounce, "longest a continuous burst of changes delays a write")
	f.StringVar(&tunnelMetrics, "tunnel-metrics", "", "URL of the tunnel server's /metrics (e.g. http://meshfleet-tunnel.istio-system:9090/metrics): its meshfleet_tunnel_agent_rtt_seconds order the failover regions nearest first")
	f.DurationVar(&rttInterval, "tunnel-metrics-interval", rtt.DefaultInterval, "how often --tunnel-metrics is read")
	f.StringVar(&primaryCluster, "primary-cluster", "", "with --cluster: the cluster whose API server istiod reads (the rules are written there; RTTs are measured from its region); default with one --cluster: that one, with --mesh-kubeconfig: the Istio resource's cluster")
	// Flags of the MCP-over-xDS server this command used to be; accepted so
	// that existing manifests still start.
	f.String("addr", "", "unused: istiod reads the rules from the API server")
	f.Duration("nack-backoff", 0, "unused")
	_ = f.MarkDeprecated("addr", "the rules are written to the API server; istiod needs no configSources entry")
	_ = f.MarkDeprecated("nack-backoff", "there is no MCP stream any more")
	return cmd
}

// readPolicy reads --policy-file ("" is the zero Policy).
func readPolicy(path string) (locality.Policy, error) {
	var policy locality.Policy
	if path == "" {
		return policy, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return policy, fmt.Errorf("--policy-file: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, &policy); err != nil {
		return policy, fmt.Errorf("--policy-file %s: %w (fields: failover, distances, outlierDetection)", path, err)
	}
	if err := policy.Validate(); err != nil {
		return policy, fmt.Errorf("--policy-file %s: %w", path, err)
	}
	return policy, nil
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

// serveDebug serves /metrics, /debug/locality and /healthz from the start:
// the server is healthy while its process runs, whatever the clusters do.
func serveDebug(ctx context.Context, addr string, srv *rulesync.Server, log *slog.Logger) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.Handle("/debug/locality", srv.DebugHandler())
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", ok)
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
