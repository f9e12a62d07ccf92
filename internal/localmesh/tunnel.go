package localmesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// haTunnel is the tunnel of a mesh with HATunnel, highly available as it would
// be deployed: two servers competing for a Lease in the primary (the holder
// is active, the other answers 503), a front that sends callers to the
// active one (the Service whose readiness follows the Lease), and two
// agents per remote that know both servers.
type haTunnel struct {
	// tunnelCA issues the tunnel's certificates; only it is trusted for the
	// tunnel, never the mesh root.
	tunnelCA *ca.KeyPair
	// APIURL is the front's address, where callers reach the clusters.
	APIURL string
	// AgentURL lists where agents connect, one URL per server.
	AgentURLs []string
	// tokenFile holds istiod's token, as its pod would have it.
	tokenFile string
	// opTokenFile holds the operator's token for the tunnel's audience.
	opTokenFile string

	servers   []*tunnelServer
	serving   *tunnel.KeyPair
	tunnelCAs *tunnel.CABundle
	clientCAs *tunnel.CABundle
	// clusters are the clusters whose agents the servers accept: those of
	// the primary's RemoteIstios.
	clusters *tunnel.ClusterSet
	primary  *rest.Config
	log      *slog.Logger
}

// tunnelServer is one replica of the tunnel server.
type tunnelServer struct {
	name               string
	apiAddr, agentAddr string
	current            atomic.Pointer[tunnel.Server]
	// registry holds the current server's metrics (a new one per start).
	registry atomic.Pointer[prometheus.Registry]
	proc     inproc
	// dead cuts the replica off the primary's API before it is stopped, so
	// that it cannot release the Lease: a crashed server does not, and
	// the standby takes over only when the Lease expires.
	dead atomic.Bool
}

// TunnelServers and TunnelAgents are how many tunnel servers a mesh with
// HATunnel runs and how many agents each remote runs.
const (
	TunnelServers = 2
	TunnelAgents  = 2
)

// startTunnel runs the tunnel servers and their front: their
// certificate and the agents' are the tunnel CA's (the operator's, in
// meshfleet-system/meshfleet-tunnel-ca, never the mesh root); callers present
// client certificates of the primary's CA or tokens the primary
// issued for the tunnel's audience (istiod, the operator: it writes the
// operator's token); agents need their cluster's RemoteIstio.
func (m *Mesh) startTunnel(ctx context.Context, tunnelCA *ca.KeyPair, namespace string) (*haTunnel, error) {
	f, err := os.OpenFile(filepath.Join(m.Dir, "tunnel.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	m.stops = append(m.stops, func() { _ = f.Close() })
	serving, err := tunnel.IssueServerCertificate(tunnelCA, []string{"127.0.0.1"}, tunnel.CertificateOptions{TTL: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	cert, err := serving.TLSCertificate()
	if err != nil {
		return nil, err
	}
	clientCAs, err := tunnel.CABundleFromPEM(m.Primary().CACertPEM)
	if err != nil {
		return nil, fmt.Errorf("the primary's client CA: %w", err)
	}
	dyn, err := dynamic.NewForConfig(m.Primary().Config)
	if err != nil {
		return nil, err
	}
	t := &haTunnel{tunnelCA: tunnelCA, tokenFile: m.istiodTokenFile(),
		opTokenFile: m.operatorTokenFile(), serving: tunnel.StaticKeyPair(cert),
		tunnelCAs: tunnel.StaticCABundle(tunnelCA.Cert), clientCAs: clientCAs, primary: m.Primary().Config,
		log: slog.New(slog.NewJSONHandler(f, nil))}
	// The Lease's elector logs through klog; its lines belong in the
	// tunnel's log, not on the terminal.
	klog.SetSlogLogger(t.log.With("component", "leader-election"))
	watchCtx, stopWatch := context.WithCancel(context.Background())
	m.stops = append(m.stops, stopWatch)
	t.clusters = tunnel.RemoteIstioClusters(watchCtx, dyn, namespace, t.log.With("component", "tunnel-clusters"))
	if err := tunnel.WriteServiceAccountToken(ctx, m.Primary().Config, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", t.opTokenFile, tokenTTL); err != nil {
		return nil, err
	}
	for i := range TunnelServers {
		addrs, err := freeAddrs(2)
		if err != nil {
			return nil, err
		}
		ts := &tunnelServer{name: fmt.Sprintf("%s/%d", ComponentTunnelServer, i), apiAddr: addrs[0], agentAddr: addrs[1]}
		t.servers = append(t.servers, ts)
		t.AgentURLs = append(t.AgentURLs, "https://"+ts.agentAddr)
		start := func(context.Context) error { return t.startServer(ts, namespace) }
		if err := start(context.Background()); err != nil {
			return nil, err
		}
		m.stops = append(m.stops, ts.proc.stop)
		m.comps.add(&component{name: ts.name, start: start,
			kill:   func() error { ts.dead.Store(true); ts.proc.stop(); return nil },
			active: func() bool { srv := ts.current.Load(); return srv != nil && srv.Active() },
			detail: func() string {
				if srv := ts.current.Load(); srv != nil && srv.Active() {
					return "active, agents " + ts.agentAddr
				}
				return "standby, agents " + ts.agentAddr
			}})
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.APIURL = "https://" + front.Addr().String()
	m.stops = append(m.stops, func() { _ = front.Close() })
	go t.serveFront(front)
	return t, nil
}

// startServer runs one tunnel server replica; it competes for the Lease
// istio-system/meshfleet-tunnel.
func (t *haTunnel) startServer(ts *tunnelServer, namespace string) error {
	ts.dead.Store(false)
	cfg := rest.CopyConfig(t.primary)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return cutOff{rt, &ts.dead} })
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	srv, err := tunnel.NewServer(tunnel.ServerOptions{ServingCertificate: t.serving, Registerer: reg, AgentCAs: t.tunnelCAs, ClientCAs: t.clientCAs,
		TokenReviews: kube.AuthenticationV1().TokenReviews(), Clusters: t.clusters, PingInterval: time.Second,
		Lease: &tunnel.LeaseOptions{Client: kube, Namespace: namespace, Name: "meshfleet-tunnel", Identity: ts.name,
			// client-go's defaults but a shorter retry: a killed server
			// releases the Lease, and the standby takes it within a second.
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second},
		Logger: t.log.With("component", "tunnel-server", "replica", ts.name)})
	if err != nil {
		return err
	}
	ts.current.Store(srv)
	ts.registry.Store(reg)
	ts.proc.run(func(ctx context.Context) {
		// A replica that loses the Lease (or its ports, for a moment after
		// a restart) runs again, as its pod would be restarted.
		for ctx.Err() == nil {
			if err := srv.Run(ctx, ts.apiAddr, ts.agentAddr); err != nil {
				t.log.Warn("tunnel server stopped; starting again", "replica", ts.name, "error", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	return nil
}

// metricsHandler serves the active server's /metrics, as the Service in
// front of the servers would (its readiness follows the Lease); 503 while
// no server is active.
func (t *haTunnel) metricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, ts := range t.servers {
			if srv, reg := ts.current.Load(), ts.registry.Load(); srv != nil && reg != nil && srv.Active() && !ts.dead.Load() {
				promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
				return
			}
		}
		http.Error(w, "no tunnel server holds the Lease", http.StatusServiceUnavailable)
	})
}

// cutOff fails every request once dead is set.
type cutOff struct {
	rt   http.RoundTripper
	dead *atomic.Bool
}

func (c cutOff) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.dead.Load() {
		return nil, errors.New("this tunnel server was killed")
	}
	return c.rt.RoundTrip(r)
}

// serveFront plays the Service in front of the tunnel servers: each
// connection goes to the server that holds the Lease. While none does (a
// crashed server's Lease has not expired yet) connections are closed after
// a short wait, as a Service without ready endpoints refuses them.
func (t *haTunnel) serveFront(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var up net.Conn
			for deadline := time.Now().Add(2 * time.Second); up == nil && time.Now().Before(deadline); {
				for _, ts := range t.servers {
					if srv := ts.current.Load(); srv != nil && srv.Active() {
						up, _ = net.DialTimeout("tcp", ts.apiAddr, 2*time.Second)
						break
					}
				}
				if up == nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if up == nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// operatorTunnel is the operator's view of the tunnel.
func (t *haTunnel) operatorTunnel() *remoteistio.Tunnel {
	return &remoteistio.Tunnel{URL: t.APIURL, CAData: t.tunnelCA.CertPEM, IstiodTokenFile: t.tokenFile, TokenFile: t.opTokenFile}
}

// startAgents runs the agents of one remote, as `meshctl cluster join
// --tunnel` would have them installed there, and waits until one is
// connected.
func (m *Mesh) startAgents(ctx context.Context, t *haTunnel, cluster string) error {
	var upstream *rest.Config
	for _, c := range m.Clusters {
		if c.Name == cluster {
			upstream = c.Config
		}
	}
	if upstream == nil {
		return fmt.Errorf("no cluster %s", cluster)
	}
	// The agent forwards with its own service account's token, under the
	// RBAC of manifests/tunnel/agent.yaml.
	upstream, err := tunnel.InstallAgentRBAC(ctx, upstream, 24*3600)
	if err != nil {
		return fmt.Errorf("install the tunnel agent's RBAC in cluster %s: %w", cluster, err)
	}
	leaf, err := tunnel.IssueAgentCertificate(t.tunnelCA, cluster, tunnel.CertificateOptions{TTL: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		return err
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		return err
	}
	var agents []*tunnel.Agent
	for i := range TunnelAgents {
		name := fmt.Sprintf("%s/%s/%d", ComponentAgent, cluster, i)
		p := &inproc{}
		start := func(context.Context) error {
			a, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: cluster, ID: fmt.Sprintf("agent-%s-%d", cluster, i), Servers: t.AgentURLs,
				Certificate: tunnel.StaticKeyPair(cert), ServerCAs: t.tunnelCAs, Upstream: upstream, BackoffInitial: 50 * time.Millisecond, BackoffMax: 2 * time.Second,
				Logger: t.log.With("component", "tunnel-agent", "cluster", cluster, "replica", i)})
			if err != nil {
				return err
			}
			agents = append(agents, a)
			p.run(func(ctx context.Context) { _ = a.Run(ctx) })
			return nil
		}
		if err := start(ctx); err != nil {
			return err
		}
		m.stops = append(m.stops, p.stop)
		m.comps.add(&component{name: name, start: start, kill: func() error { p.stop(); return nil }})
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		for _, a := range agents {
			if a.Status().Connected {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no agent of %s connected to a tunnel server within 30s (last status %+v)", cluster, agents[0].Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddrs returns n distinct 127.0.0.1:<port> addresses that were free a
// moment ago.
func freeAddrs(n int) ([]string, error) {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// serveTunnelMetrics serves the active tunnel server's metrics on
// TunnelMetricsAddr until Stop.
func (m *Mesh) serveTunnelMetrics(t *haTunnel) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m.TunnelMetricsAddr = ln.Addr().String()
	hs := &http.Server{Handler: t.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	m.stops = append(m.stops, func() { _ = hs.Close() })
	return nil
}
