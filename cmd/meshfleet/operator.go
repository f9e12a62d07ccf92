package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// minCertTTL is the shortest certificate lifetime the command accepts: an
// hour leaves the operator 20 minutes to renew through a slow tunnel
// (operator.MinCertTTL, a minute, is for tests).
const minCertTTL = time.Hour

func newOperatorCommand(logs *logFlags) *cobra.Command {
	var (
		opts       operator.Options
		kubeconfig string
		kubeCtx    string
		tunnel     remoteistio.Tunnel
		tunnelCA   string
		runServer  bool
		agentSvc   string
	)
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Reconcile Istio resources into running control planes",
		Example: `  # in a cluster (service account credentials)
  meshfleet operator --leader-elect

  # against a cluster from a kubeconfig
  meshfleet operator --kubeconfig ~/.kube/config --metrics-addr :8080`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := logs.logger(os.Stderr); err != nil {
				return err
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
				&clientcmd.ConfigOverrides{CurrentContext: kubeCtx}).ClientConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w (pass --kubeconfig, or run in a cluster)", err)
			}
			if tunnel.URL != "" {
				if tunnel.CAData, err = readTunnelCA(cmd.Context(), cfg, tunnelCA, runServer); err != nil {
					return err
				}
				opts.Tunnel = &tunnel
			}
			for _, d := range []struct {
				flag string
				ttl  time.Duration
			}{{"--agent-cert-ttl", opts.AgentCertTTL}, {"--tunnel-server-cert-ttl", opts.ServerCertTTL}} {
				if d.ttl < minCertTTL {
					return fmt.Errorf("%s %v: want at least %v (certificates are renewed when a third of their life is left)", d.flag, d.ttl, minCertTTL)
				}
			}
			if runServer {
				if len(opts.TunnelServerHosts) == 0 {
					return fmt.Errorf("--run-tunnel-server needs --tunnel-server-hosts, the names of the certificate the operator keeps for it (e.g. meshfleet-tunnel.meshfleet-system.svc,tunnel.example.com)")
				}
				opts.TunnelServer = &render.TunnelServer{AgentServiceType: corev1.ServiceType(agentSvc)}
			}
			return operator.Run(ctrl.SetupSignalHandler(), cfg, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&kubeCtx, "context", "", "kubeconfig context to use")
	f.StringVar(&opts.MetricsAddr, "metrics-addr", ":8080", "address serving Prometheus metrics (0 disables)")
	f.StringVar(&opts.HealthAddr, "health-addr", ":8081", "address serving /healthz and /readyz (0 disables)")
	f.BoolVar(&opts.LeaderElection, "leader-elect", false, "elect one active replica through a Lease")
	f.StringVar(&opts.LeaderElectionNamespace, "leader-elect-namespace", "", "namespace of the leader Lease (default: the pod's)")
	f.StringVar(&opts.Image, "image", os.Getenv("MESHFLEET_IMAGE"), "meshfleet's image, the operator's own (default: $MESHFLEET_IMAGE, else this build's image): the locality server, the tunnel server and the tunnel agents run it; agents running another image are updated to it through the tunnel")
	f.StringVar(&opts.LocalityImage, "locality-image", "", "image of the locality server the operator runs for spec.localityLB.enabled (default: --image)")
	f.BoolVar(&runServer, "run-tunnel-server", false, "run the tunnel server (two replicas and a Lease, in meshfleet-system) with each Istio control plane, with the certificate kept for --tunnel-server-hosts")
	f.StringVar(&agentSvc, "tunnel-agent-service-type", string(corev1.ServiceTypeLoadBalancer), "type of the Service meshfleet-tunnel-agents that the remote clusters' agents dial (with --run-tunnel-server)")
	f.DurationVar(&opts.AgentCertTTL, "agent-cert-ttl", meshca.AgentCertTTL, "lifetime of the tunnel agents' certificates, renewed through the tunnel when a third is left")
	f.DurationVar(&opts.ServerCertTTL, "tunnel-server-cert-ttl", meshca.ServerCertTTL, "lifetime of the tunnel server's certificate (with --tunnel-server-hosts), renewed when a third is left")
	f.StringVar(&tunnel.URL, "tunnel-url", "", "URL of the tunnel server; remote clusters without a kubeconfig Secret are reached at <url>/clusters/<name>")
	f.StringVar(&tunnelCA, "tunnel-ca-file", "", "the tunnel CA, the only CA that verifies the tunnel server (required with --tunnel-url; root-cert.pem of meshfleet-system/meshfleet-tunnel-ca, never the mesh root)")
	f.StringVar(&tunnel.IstiodTokenFile, "istiod-token-file", render.TunnelTokenPath,
		"where istiod reads its own token for the tunnel's audience (projected into istiod's pod), written into the remote secrets of tunnelled clusters")
	f.StringVar(&opts.IstiodTokenFile, "istiod-debug-token-file", "/var/run/secrets/meshfleet.io/istiod-debug/token",
		"the operator's token for istiod (a projected service-account token, audience istio-ca), shown to istiod's /debug/syncz, which the fleet rollout's xDS gate reads; no token is sent when the file does not exist")
	f.StringVar(&tunnel.TokenFile, "tunnel-token-file", render.TunnelTokenPath,
		"the operator's own token for the tunnel's audience (a projected service-account token), presented to the tunnel server")
	f.StringSliceVar(&opts.TunnelServerHosts, "tunnel-server-hosts", nil,
		"keep the tunnel server's certificate for these DNS names / IPs in meshfleet-system/meshfleet-tunnel-server-tls, issued from the tunnel CA and renewed before expiry (e.g. meshfleet-tunnel.meshfleet-system.svc,tunnel.example.com)")
	f.DurationVar(&opts.RemoteResync, "remote-resync", time.Minute, "how often a remote cluster is checked again for drift and token renewal")
	f.DurationVar(&opts.Resync, "resync", 5*time.Minute, "how often a Ready control plane is checked again for drift and certificate renewal")
	return cmd
}

// readTunnelCA reads the tunnel CA of --tunnel-ca-file. An operator that
// runs the tunnel server keeps that CA itself: on a first install the
// Secret its pod mounts the file from does not exist yet (the chart mounts
// it optional), so a missing or empty file is the CA the operator creates
// or finds in the cluster, the same one (meshfleet-system/meshfleet-tunnel-ca).
func readTunnelCA(ctx context.Context, cfg *rest.Config, file string, runServer bool) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err == nil && len(b) > 0 {
		return b, nil
	}
	if !runServer {
		if err == nil {
			err = errors.New("empty file")
		}
		return nil, fmt.Errorf("--tunnel-ca-file: %w", err)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--tunnel-ca-file: %w", err)
	}
	scheme, err := operator.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	kp, _, err := meshca.TunnelCA(ctx, c, time.Now())
	if err != nil {
		// Another replica created it at the same moment: read it.
		kp, _, err = meshca.TunnelCA(ctx, c, time.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("the tunnel CA (--tunnel-ca-file %s is not there yet): %w", file, err)
	}
	return kp.CertPEM, nil
}
