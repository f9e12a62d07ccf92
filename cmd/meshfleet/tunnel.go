package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
)

func newTunnelCommand(logs *logFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Reach remote clusters' Kubernetes APIs through agents that dial out",
	}
	cmd.AddCommand(newTunnelServerCommand(logs), newTunnelAgentCommand(logs), newTunnelIssueCertCommand())
	return cmd
}

func newTunnelServerCommand(logs *logFlags) *cobra.Command {
	var (
		apiAddr, agentAddr, metricsAddr string
		certFile, keyFile               string
		agentCAFile, clientCAFile       string
		tokenReview                     bool
		kubeconfig                      string
		lease                           tunnel.LeaseOptions
		leaseEnabled                    bool
		pingInterval                    time.Duration
		accessFile, prefix              string
		allowUsers, staticClusters      []string
		istioNS, meshfleetNS            string
		opts                            tunnel.ServerOptions
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Accept tunnel agents and serve their clusters at https://<addr>/clusters/<name>/",
		Long: `Accept tunnel agents and serve their clusters at https://<addr>/clusters/<name>/.

Only the identities of the access policy may use the tunnel: by default
istiod and Kiali (--istio-namespace), the meshfleet operator and the locality
server (--meshfleet-namespace); more with --allow-user or --access-config.
Their user and groups are impersonated in the remote under --identity-prefix.
Bearer tokens must be issued for the audience --token-audience. Agents are
accepted only for clusters with a RemoteIstio in --istio-namespace of the
primary (or --clusters).
Certificates and CA files are re-read when they change.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(os.Stderr)
			if err != nil {
				return err
			}
			if opts.ServingCertificate, err = tunnel.KeyPairFromFiles(certFile, keyFile); err != nil {
				return fmt.Errorf("--tls-cert-file / --tls-key-file: %w", err)
			}
			if pingInterval <= 0 {
				return fmt.Errorf("--ping-interval %v: want a positive duration, e.g. 5s", pingInterval)
			}
			opts.PingInterval, opts.Logger, opts.Registerer = pingInterval, log, prometheus.DefaultRegisterer
			if agentCAFile == "" {
				return errors.New("--agent-ca-file is required: the CA bundle agent certificates chain to")
			}
			if opts.AgentCAs, err = tunnel.CABundleFromFile(agentCAFile); err != nil {
				return fmt.Errorf("--agent-ca-file: %w", err)
			}
			if clientCAFile != "" {
				if opts.ClientCAs, err = tunnel.CABundleFromFile(clientCAFile); err != nil {
					return fmt.Errorf("--client-ca-file: %w", err)
				}
			}
			access := tunnel.DefaultAccessPolicy(istioNS, meshfleetNS)
			if accessFile != "" {
				b, err := os.ReadFile(accessFile)
				if err != nil {
					return fmt.Errorf("--access-config: %w", err)
				}
				if access, err = tunnel.ParseAccessPolicy(b); err != nil {
					return fmt.Errorf("--access-config %s: %w", accessFile, err)
				}
			}
			if cmd.Flags().Changed("identity-prefix") || accessFile == "" {
				access.Prefix = prefix
			}
			for _, u := range allowUsers {
				access.Allow = append(access.Allow, tunnel.AccessRule{User: u})
			}
			if err := access.Validate(); err != nil {
				return fmt.Errorf("access policy (--access-config, --allow-user, --identity-prefix): %w", err)
			}
			opts.Access = &access
			ctx := signalContext()
			needPrimary := tokenReview || leaseEnabled || len(staticClusters) == 0
			if needPrimary {
				cfg, err := loadKubeconfig(kubeconfig)
				if err != nil {
					return err
				}
				client, err := kubernetes.NewForConfig(cfg)
				if err != nil {
					return fmt.Errorf("client for the primary cluster: %w", err)
				}
				if tokenReview {
					opts.TokenReviews = client.AuthenticationV1().TokenReviews()
				}
				if leaseEnabled {
					lease.Client = client
					if lease.Identity == "" {
						lease.Identity = podName()
					}
					if lease.PodNamespace != "" {
						lease.PodName = podName()
					}
					opts.Lease = &lease
				}
				if len(staticClusters) == 0 {
					dyn, err := dynamic.NewForConfig(cfg)
					if err != nil {
						return fmt.Errorf("client for the primary cluster: %w", err)
					}
					opts.Clusters = tunnel.RemoteIstioClusters(ctx, dyn, istioNS, log)
				}
			}
			if len(staticClusters) > 0 {
				opts.Clusters = tunnel.NewClusterSet(staticClusters...)
			}
			srv, err := tunnel.NewServer(opts)
			if err != nil {
				return err
			}
			serveMetrics(ctx, metricsAddr, log)
			return srv.Run(ctx, apiAddr, agentAddr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&apiAddr, "api-addr", ":8443", "address serving callers (kubectl, client-go) at /clusters/<name>/")
	f.StringVar(&agentAddr, "agent-addr", ":8444", "address agents connect to")
	f.StringVar(&metricsAddr, "metrics-addr", ":9090", "address serving Prometheus metrics at /metrics (empty disables)")
	f.StringVar(&certFile, "tls-cert-file", "", "serving certificate (PEM, issued from the tunnel CA); re-read when it changes")
	f.StringVar(&keyFile, "tls-key-file", "", "serving certificate's private key (PEM)")
	f.StringVar(&agentCAFile, "agent-ca-file", "", "tunnel CA (PEM) that agent certificates chain to (meshfleet-system/meshfleet-tunnel-ca; never the mesh root); re-read when it changes")
	f.StringVar(&clientCAFile, "client-ca-file", "", "CA (PEM) of callers' client certificates, e.g. the primary's client CA; re-read when it changes")
	f.BoolVar(&tokenReview, "token-review", true, "authenticate bearer tokens with a TokenReview against the primary cluster")
	f.StringSliceVar(&opts.TokenAudiences, "token-audience", []string{tunnel.TokenAudience}, "audience callers' tokens must be issued for (a projected service-account token with this audience); tokens for the API server are refused")
	f.Float64Var(&opts.TokenReviewRate, "token-review-qps", tunnel.DefaultTokenReviewRate, "TokenReviews per second for tokens not in the cache; callers beyond it get 429")
	f.IntVar(&opts.TokenReviewBurst, "token-review-burst", tunnel.DefaultTokenReviewBurst, "burst of --token-review-qps")
	f.StringVar(&accessFile, "access-config", "", "YAML access policy {prefix, allow: [{user|group, clusters}]} replacing the default one")
	f.StringSliceVar(&allowUsers, "allow-user", nil, "also allow this primary user to use the tunnel to every cluster (repeatable)")
	f.StringVar(&prefix, "identity-prefix", mapping.DefaultPrefix, "prefix of every user and group impersonated in a remote")
	f.StringVar(&istioNS, "istio-namespace", tunnel.DefaultIstioNamespace, "namespace of istiod and Kiali (allowed by the default access policy) and of the RemoteIstios whose agents are accepted")
	f.StringVar(&meshfleetNS, "meshfleet-namespace", tunnel.DefaultMeshfleetNamespace, "namespace of the meshfleet operator and locality server, allowed by the default access policy")
	f.StringSliceVar(&staticClusters, "clusters", nil, "accept agents of these clusters only (default: the clusters of the primary's RemoteIstios, watched)")
	f.IntVar(&opts.MaxStreamsPerAgent, "max-streams-per-agent", tunnel.DefaultMaxStreamsPerAgent, "requests open at once on one agent's session")
	f.IntVar(&opts.MaxAgentsPerCluster, "max-agents-per-cluster", tunnel.DefaultMaxAgentsPerCluster, "agent sessions accepted per cluster")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the primary cluster (default: in-cluster)")
	f.BoolVar(&leaseEnabled, "leader-elect", false, "be active only while holding the tunnel Lease (run several replicas for HA)")
	f.DurationVar(&pingInterval, "ping-interval", tunnel.DefaultPingInterval, "how often the RTT to each agent is measured (meshfleet_tunnel_agent_rtt_seconds, which `meshfleet xds --tunnel-metrics` orders failover by)")
	f.StringVar(&lease.Namespace, "lease-namespace", "meshfleet-system", "namespace of the tunnel Lease")
	f.StringVar(&lease.Name, "lease-name", "meshfleet-tunnel-server", "name of the tunnel Lease")
	f.StringVar(&lease.Identity, "lease-identity", "", "this server's identity in the Lease (default: $POD_NAME or the host name)")
	f.StringVar(&lease.PodNamespace, "pod-namespace", os.Getenv("POD_NAMESPACE"), "with --leader-elect: namespace of this server's pod ($POD_NAME), which it labels "+tunnel.RoleLabel+"=active while it holds the Lease, for the Services to select (default: $POD_NAMESPACE)")
	f.DurationVar(&lease.LeaseDuration, "lease-duration", 15*time.Second, "how long a standby waits before taking over a lease that is not renewed")
	f.DurationVar(&lease.RenewDeadline, "lease-renew-deadline", 10*time.Second, "how long the active server keeps trying to renew before it steps down")
	f.DurationVar(&lease.RetryPeriod, "lease-retry-period", 2*time.Second, "how often the lease is tried")
	return cmd
}

func newTunnelAgentCommand(logs *logFlags) *cobra.Command {
	var (
		opts                      tunnel.AgentOptions
		certFile, keyFile, caFile string
		kubeconfig, metricsAddr   string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Dial out to a tunnel server and forward its requests to this cluster's API server",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(os.Stderr)
			if err != nil {
				return err
			}
			if opts.Certificate, err = tunnel.KeyPairFromFiles(certFile, keyFile); err != nil {
				return fmt.Errorf("--tls-cert-file / --tls-key-file: %w", err)
			}
			if caFile == "" {
				return errors.New("--server-ca-file is required: the CA bundle the server certificate chains to")
			}
			if opts.ServerCAs, err = tunnel.CABundleFromFile(caFile); err != nil {
				return fmt.Errorf("--server-ca-file: %w", err)
			}
			if opts.Upstream, err = loadKubeconfig(kubeconfig); err != nil {
				return err
			}
			if opts.ID == "" {
				opts.ID = os.Getenv("POD_NAME")
			}
			opts.Logger, opts.Registerer = log, prometheus.DefaultRegisterer
			agent, err := tunnel.NewAgent(opts)
			if err != nil {
				return err
			}
			ctx := signalContext()
			serveMetrics(ctx, metricsAddr, log)
			return agent.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Cluster, "cluster", "", "name of this cluster (must match the agent certificate)")
	f.StringVar(&opts.ID, "id", "", "agent ID (default: $POD_NAME, else host name and a random suffix)")
	f.StringSliceVar(&opts.Servers, "server", nil, "tunnel server agent URL, https://host:port (repeat for several servers)")
	f.StringVar(&certFile, "tls-cert-file", "", "agent certificate (PEM; from `meshfleet tunnel issue-cert --cluster`); re-read when it changes")
	f.StringVar(&keyFile, "tls-key-file", "", "agent certificate's private key (PEM)")
	f.StringVar(&caFile, "server-ca-file", "", "tunnel CA (PEM) that the server certificate chains to (ca.crt of the agent Secret; never the mesh root)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of this cluster with the agent's own credentials (default: in-cluster)")
	f.StringVar(&metricsAddr, "metrics-addr", ":9090", "address serving Prometheus metrics at /metrics (empty disables)")
	return cmd
}

func newTunnelIssueCertCommand() *cobra.Command {
	var (
		caCert, caKey, cluster, out string
		hosts                       []string
		ttl                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue-cert",
		Short: "Issue a tunnel server certificate (--host) or agent certificate (--cluster) from the tunnel CA",
		Long: `issue-cert signs with the tunnel CA, which the operator keeps in the Secret
meshfleet-system/meshfleet-tunnel-ca (root-cert.pem, root-key.pem). Agents
and the tunnel's clients trust only that CA, so certificates from the mesh
root or a cluster's intermediate (cacerts) are refused. Agent certificates
are normally issued and renewed by the operator (meshctl cluster join
--tunnel); --cluster is for agents run outside it.`,
		Example: `  meshfleet tunnel issue-cert --ca-cert tunnel-ca.pem --ca-key tunnel-ca-key.pem --host tunnel.example.com --out server
  meshfleet tunnel issue-cert --ca-cert tunnel-ca.pem --ca-key tunnel-ca-key.pem --cluster remote1 --ttl 168h --out agent`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPEM, err := os.ReadFile(caCert)
			if err != nil {
				return fmt.Errorf("read --ca-cert: %w", err)
			}
			keyPEM, err := os.ReadFile(caKey)
			if err != nil {
				return fmt.Errorf("read --ca-key: %w", err)
			}
			issuer, err := ca.ParseKeyPair(certPEM, keyPEM, time.Now())
			if err != nil {
				return fmt.Errorf("--ca-cert/--ca-key: %w", err)
			}
			if cluster := ca.ClusterOf(issuer.Cert); cluster != "" {
				return fmt.Errorf("--ca-cert is the mesh intermediate CA of cluster %s; the tunnel trusts only the tunnel CA: pass the certificate and key of Secret meshfleet-system/meshfleet-tunnel-ca", cluster)
			}
			copts := tunnel.CertificateOptions{TTL: ttl, Now: time.Now()}
			var c *tunnel.Certificate
			switch {
			case cluster != "" && len(hosts) == 0:
				c, err = tunnel.IssueAgentCertificate(issuer, cluster, copts)
			case cluster == "" && len(hosts) > 0:
				c, err = tunnel.IssueServerCertificate(issuer, hosts, copts)
			default:
				return errors.New("give exactly one of --cluster (agent certificate) or --host (server certificate)")
			}
			if err != nil {
				return err
			}
			if err := os.WriteFile(out+".crt", c.CertPEM, 0o644); err != nil {
				return err
			}
			return os.WriteFile(out+".key", c.KeyPEM, 0o600)
		},
	}
	f := cmd.Flags()
	f.StringVar(&caCert, "ca-cert", "", "tunnel CA certificate (PEM, root-cert.pem of meshfleet-system/meshfleet-tunnel-ca)")
	f.StringVar(&caKey, "ca-key", "", "tunnel CA private key (PEM)")
	f.StringVar(&cluster, "cluster", "", "issue an agent certificate for this cluster")
	f.StringSliceVar(&hosts, "host", nil, "issue a server certificate for these DNS names / IPs")
	f.StringVar(&out, "out", "tunnel", "write <out>.crt and <out>.key")
	f.DurationVar(&ttl, "ttl", 90*24*time.Hour, "validity (the operator issues agent certificates for 7 days and renews them)")
	return cmd
}

func loadKubeconfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (pass --kubeconfig, or run in a cluster)", err)
	}
	return cfg, nil
}

func podName() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

func signalContext() context.Context {
	ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return ctx
}

func serveMetrics(ctx context.Context, addr string, log *slog.Logger) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "addr", addr, "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
}
