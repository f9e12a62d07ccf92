package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

func newTunnelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Reach remote clusters' Kubernetes APIs through agents that dial out",
	}
	cmd.AddCommand(newTunnelServerCommand(), newTunnelAgentCommand(), newTunnelIssueCertCommand())
	return cmd
}

func newTunnelServerCommand() *cobra.Command {
	var (
		apiAddr, agentAddr, metricsAddr string
		certFile, keyFile               string
		agentCAFile, clientCAFile       string
		tokenReview                     bool
		kubeconfig                      string
		lease                           tunnel.LeaseOptions
		leaseEnabled                    bool
		pingInterval                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Accept tunnel agents and serve their clusters at https://<addr>/clusters/<name>/",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("load --tls-cert-file %s / --tls-key-file %s: %w", certFile, keyFile, err)
			}
			if pingInterval <= 0 {
				return fmt.Errorf("--ping-interval %v: want a positive duration, e.g. 5s", pingInterval)
			}
			opts := tunnel.ServerOptions{ServingCertificate: cert, PingInterval: pingInterval, Logger: log, Registerer: prometheus.DefaultRegisterer}
			if opts.AgentCAs, err = loadPool(agentCAFile, "--agent-ca-file"); err != nil {
				return err
			}
			if clientCAFile != "" {
				if opts.ClientCAs, err = loadPool(clientCAFile, "--client-ca-file"); err != nil {
					return err
				}
			}
			if tokenReview || leaseEnabled {
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
					opts.Lease = &lease
				}
			}
			srv, err := tunnel.NewServer(opts)
			if err != nil {
				return err
			}
			ctx := signalContext()
			serveMetrics(ctx, metricsAddr, log)
			return srv.Run(ctx, apiAddr, agentAddr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&apiAddr, "api-addr", ":8443", "address serving callers (kubectl, client-go) at /clusters/<name>/")
	f.StringVar(&agentAddr, "agent-addr", ":8444", "address agents connect to")
	f.StringVar(&metricsAddr, "metrics-addr", ":9090", "address serving Prometheus metrics at /metrics (empty disables)")
	f.StringVar(&certFile, "tls-cert-file", "", "serving certificate (PEM, issued from the tunnel CA)")
	f.StringVar(&keyFile, "tls-key-file", "", "serving certificate's private key (PEM)")
	f.StringVar(&agentCAFile, "agent-ca-file", "", "tunnel CA (PEM) that agent certificates chain to (meshfleet-system/meshfleet-tunnel-ca; never the mesh root)")
	f.StringVar(&clientCAFile, "client-ca-file", "", "CA (PEM) of callers' client certificates, e.g. the primary's client CA")
	f.BoolVar(&tokenReview, "token-review", true, "authenticate bearer tokens with a TokenReview against the primary cluster")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the primary cluster (default: in-cluster)")
	f.BoolVar(&leaseEnabled, "leader-elect", false, "be active only while holding the tunnel Lease (run several replicas for HA)")
	f.DurationVar(&pingInterval, "ping-interval", tunnel.DefaultPingInterval, "how often the RTT to each agent is measured (meshfleet_tunnel_agent_rtt_seconds, which `meshfleet xds --tunnel-metrics` orders failover by)")
	f.StringVar(&lease.Namespace, "lease-namespace", "meshfleet-system", "namespace of the tunnel Lease")
	f.StringVar(&lease.Name, "lease-name", "meshfleet-tunnel-server", "name of the tunnel Lease")
	f.StringVar(&lease.Identity, "lease-identity", "", "this server's identity in the Lease (default: $POD_NAME or the host name)")
	f.DurationVar(&lease.LeaseDuration, "lease-duration", 15*time.Second, "how long a standby waits before taking over a lease that is not renewed")
	f.DurationVar(&lease.RenewDeadline, "lease-renew-deadline", 10*time.Second, "how long the active server keeps trying to renew before it steps down")
	f.DurationVar(&lease.RetryPeriod, "lease-retry-period", 2*time.Second, "how often the lease is tried")
	return cmd
}

func newTunnelAgentCommand() *cobra.Command {
	var (
		opts                      tunnel.AgentOptions
		certFile, keyFile, caFile string
		kubeconfig, metricsAddr   string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Dial out to a tunnel server and forward its requests to this cluster's API server",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("load --tls-cert-file %s / --tls-key-file %s: %w", certFile, keyFile, err)
			}
			opts.Certificate = cert
			if opts.ServerCAs, err = loadPool(caFile, "--server-ca-file"); err != nil {
				return err
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
	f.StringVar(&certFile, "tls-cert-file", "", "agent certificate (PEM; from `meshfleet tunnel issue-cert --agent`)")
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

func loadPool(file, flag string) (*x509.CertPool, error) {
	if file == "" {
		return nil, fmt.Errorf("%s is required", flag)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", flag, file)
	}
	return pool, nil
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
