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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/members"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/pkg/locality/rtt"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
)

func newXDSCommand(logs *logFlags) *cobra.Command {
	var (
		clusters              []string
		debugAddr             string
		policyFile, domain    string
		debounce, maxDebounce time.Duration
		holdDown              time.Duration
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
			id, _ := os.Hostname()
			if p := os.Getenv("POD_NAME"); p != "" {
				id = p
			}
			opts := pipeline.Options{
				Namespace: rulesNamespace, Domain: domain, Policy: policy,
				TunnelMetrics: tunnelMetrics, TunnelMetricsInterval: rttInterval,
				Debounce: debounce, MaxDebounce: maxDebounce, HoldDown: holdDown, Identity: id,
				Logger: log, Registerer: prometheus.DefaultRegisterer,
			}
			if leaderElect {
				opts.Lease = &rulesync.Lease{Namespace: rulesNamespace, Name: leaseName, Identity: id}
			}
			if fromMesh {
				if opts.Mesh, err = loadKubeconfig(meshKubeconfig); err != nil {
					return fmt.Errorf("--mesh-kubeconfig: %w", err)
				}
				if tunnelURL != "" {
					ca, err := os.ReadFile(tunnelCA)
					if err != nil {
						return fmt.Errorf("--tunnel-ca-file: %w", err)
					}
					meshOpts.Tunnel = &members.Tunnel{URL: tunnelURL, CAData: ca, TokenFile: tunnelToken}
				}
				opts.MeshOptions, opts.PrimaryCluster = meshOpts, primaryCluster
			} else {
				if opts.Clusters, err = parseClusters(clusters); err != nil {
					return err
				}
				if _, ok := opts.Clusters[primaryCluster]; !ok && (primaryCluster != "" || len(clusters) > 1) {
					return fmt.Errorf("--primary-cluster %q: name the --cluster whose API server istiod reads (the rules are written there)", primaryCluster)
				}
				opts.PrimaryCluster = primaryCluster
			}
			s, err := pipeline.New(opts)
			if err != nil {
				return err
			}
			serveDebug(ctx, debugAddr, s.Server, log)
			log.Info("writing locality DestinationRules", "primary", s.Primary().Host, "namespace", rulesNamespace, "leaderElection", leaderElect)
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
	f.DurationVar(&holdDown, "failover-hold-down", rulesync.DefaultHoldDown, "how long a rule update waits when it changes only failover entries no request uses now (targets readiness moved for regions served locally), so that istiod pushes the endpoint change first (0: the default; negative: every change at once)")
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
