package tunnel

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"time"

	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/ca"
)

// Local is a tunnel server on loopback and the agents connected to it, all
// in this process: the sandbox's tunnel, and the tests'.
type Local struct {
	*Server
	// APIURL is where callers reach the clusters (APIURL/clusters/<name>).
	APIURL string
	// AgentURL is where agents connect.
	AgentURL string

	root  *ca.KeyPair
	log   *slog.Logger
	stops []func()
}

// LocalOptions configure StartLocal.
type LocalOptions struct {
	// Root is the tunnel CA (never the mesh root): it issues the server's
	// and agents' certificates, and is the only CA either side trusts.
	Root *ca.KeyPair
	// ClientCAPEM authenticates callers' client certificates (the primary's CA).
	ClientCAPEM []byte
	// TokenReviews, when set, authenticates callers' bearer tokens.
	TokenReviews authnv1client.TokenReviewInterface
	// Logger receives the server's and agents' logs; slog.Default() if nil.
	Logger *slog.Logger
}

// StartLocal starts a tunnel server on 127.0.0.1 with certificates issued
// from opts.Root. Stop ends it and its agents.
func StartLocal(opts LocalOptions) (*Local, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	serving, err := IssueServerCertificate(opts.Root, []string{"127.0.0.1"}, CertificateOptions{TTL: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	cert, err := serving.TLSCertificate()
	if err != nil {
		return nil, err
	}
	agentCAs, clientCAs := x509.NewCertPool(), x509.NewCertPool()
	agentCAs.AddCert(opts.Root.Cert)
	if len(opts.ClientCAPEM) > 0 && !clientCAs.AppendCertsFromPEM(opts.ClientCAPEM) {
		return nil, fmt.Errorf("no certificate in the client CA")
	}
	srv, err := NewServer(ServerOptions{ServingCertificate: cert, AgentCAs: agentCAs, ClientCAs: clientCAs,
		TokenReviews: opts.TokenReviews, PingInterval: time.Second, Logger: opts.Logger.With("component", "tunnel-server")})
	if err != nil {
		return nil, err
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		apiLn.Close()
		return nil, err
	}
	l := &Local{Server: srv, APIURL: "https://" + apiLn.Addr().String(), AgentURL: "https://" + agentLn.Addr().String(),
		root: opts.Root, log: opts.Logger}
	l.goRun(func(ctx context.Context) { _ = srv.Serve(ctx, apiLn, agentLn) })
	return l, nil
}

// StartAgent runs an agent of cluster with a certificate of the root for
// that cluster, forwarding with upstream's credentials (which must be
// allowed to impersonate). The returned func stops it.
func (l *Local) StartAgent(cluster string, upstream *rest.Config) (stop func(), err error) {
	leaf, err := IssueAgentCertificate(l.root, cluster, CertificateOptions{TTL: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(l.root.Cert)
	a, err := NewAgent(AgentOptions{Cluster: cluster, ID: "agent-" + cluster, Servers: []string{l.AgentURL},
		Certificate: cert, ServerCAs: roots, Upstream: upstream, BackoffInitial: 50 * time.Millisecond, BackoffMax: 2 * time.Second,
		Logger: l.log.With("component", "tunnel-agent", "cluster", cluster)})
	if err != nil {
		return nil, err
	}
	return l.goRun(func(ctx context.Context) { _ = a.Run(ctx) }), nil
}

// Stop ends the server and every agent started through it.
func (l *Local) Stop() {
	for i := len(l.stops) - 1; i >= 0; i-- {
		l.stops[i]()
	}
	l.stops = nil
}

func (l *Local) goRun(f func(ctx context.Context)) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f(ctx); close(done) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	l.stops = append(l.stops, stop)
	return stop
}
