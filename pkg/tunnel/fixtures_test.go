package tunnel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// testPKI is a mesh root with one intermediate per cluster, the tunnel
// server's certificate and a CA for callers' client certificates.
type testPKI struct {
	root     *ca.KeyPair
	inter    map[string]*ca.KeyPair
	roots    *x509.CertPool
	serving  tls.Certificate
	clientCA *ca.KeyPair
	clients  *x509.CertPool
}

func newTestPKI(t testing.TB, clusters ...string) *testPKI {
	t.Helper()
	now := time.Now()
	root, err := ca.NewRoot(ca.RootOptions{TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{root: root, inter: map[string]*ca.KeyPair{}, roots: x509.NewCertPool(), clients: x509.NewCertPool()}
	p.roots.AddCert(root.Cert)
	for _, c := range clusters {
		p.inter[c] = clusterSubCA(t, root, c, now)
	}
	sc, err := IssueServerCertificate(root, []string{"127.0.0.1", "localhost"}, CertificateOptions{TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if p.serving, err = sc.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
	p.clientCA, err = ca.NewRoot(ca.RootOptions{CommonName: "callers", TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	p.clients.AddCert(p.clientCA.Cert)
	return p
}

// clusterSubCA is a per-cluster CA under root named as ca.IssueIntermediate
// names them (ca.ClusterOf finds the cluster), without the name constraints
// that keep the mesh's real intermediates from signing agent identities.
func clusterSubCA(t testing.TB, root *ca.KeyPair, cluster string, now time.Time) *ca.KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{OrganizationalUnit: []string{cluster}, CommonName: "meshfleet intermediate CA " + cluster},
		NotBefore:    now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, key.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.ParseKeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), now)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// agentCert issues an agent certificate for cluster signed by the
// intermediate of issuerCluster (which may differ, to forge a foreign one).
func (p *testPKI) agentCert(t testing.TB, cluster, issuerCluster string) tls.Certificate {
	t.Helper()
	c, err := issueLeaf(p.inter[issuerCluster], &x509.Certificate{
		Subject:     pkix.Name{OrganizationalUnit: []string{cluster}, CommonName: agentCommonName},
		URIs:        []*url.URL{AgentIdentityURI(cluster)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// clientCert issues a caller's client certificate (CN user, O groups).
func (p *testPKI) clientCert(t testing.TB, user string, groups ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, err := issueLeaf(p.clientCA, &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return c.CertPEM, c.KeyPEM
}

// testServer is a Server serving on loopback ports.
type testServer struct {
	*Server
	apiURL, agentURL string
	cancel           context.CancelFunc
	done             chan error
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TUNNEL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// testAccess is the default access policy plus the tests' users.
func testAccess() *AccessPolicy {
	a := DefaultAccessPolicy(DefaultIstioNamespace, DefaultMeshfleetNamespace)
	a.Allow = append(a.Allow, AccessRule{User: "alice"}, AccessRule{User: "mallory"}, AccessRule{User: "system:serviceaccount:default:bob"})
	return &a
}

// startTestServer starts a server with opts completed from p; opts may set
// authentication, access, clusters, lease and logger. By default it accepts
// the agents of p's clusters and the callers of testAccess.
func startTestServer(t testing.TB, p *testPKI, opts ServerOptions) *testServer {
	t.Helper()
	if opts.ServingCertificate == nil {
		opts.ServingCertificate = StaticKeyPair(p.serving)
	}
	if opts.AgentCAs == nil {
		opts.AgentCAs = StaticCABundle(p.root.Cert)
	}
	if opts.ClientCAs == nil && opts.TokenReviews == nil {
		opts.ClientCAs = StaticCABundle(p.clientCA.Cert)
	}
	if opts.Clusters == nil {
		opts.Clusters = NewClusterSet(slices.Sorted(maps.Keys(p.inter))...)
	}
	if opts.Access == nil {
		opts.Access = testAccess()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = 200 * time.Millisecond
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	apiLn := listen(t)
	agentLn := listen(t)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	ts := &testServer{
		Server:   s,
		apiURL:   "https://" + apiLn.Addr().String(),
		agentURL: "https://" + agentLn.Addr().String(),
		cancel:   cancel,
		done:     make(chan error, 1),
	}
	go func() { ts.done <- s.Serve(ctx, apiLn, agentLn) }()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	ts.cancel()
	<-ts.done
	ts.done <- nil // later stops return at once
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// testAgent is an Agent running in the background.
type testAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan struct{}
}

func startTestAgent(t testing.TB, p *testPKI, cluster string, cert tls.Certificate, upstream *rest.Config, servers ...string) *testAgent {
	t.Helper()
	a, err := NewAgent(AgentOptions{
		Cluster:        cluster,
		Servers:        servers,
		Certificate:    StaticKeyPair(cert),
		ServerCAs:      StaticCABundle(p.root.Cert),
		Upstream:       upstream,
		BackoffInitial: 50 * time.Millisecond,
		BackoffMax:     time.Second,
		Logger:         testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	ta := &testAgent{Agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		_ = a.Run(ctx)
		close(ta.done)
	}()
	t.Cleanup(ta.stop)
	return ta
}

// stop kills the agent: its session closes at once.
func (ta *testAgent) stop() {
	ta.cancel()
	<-ta.done
}

// waitAgents waits until srv has n agents for cluster.
func waitAgents(t testing.TB, srv *Server, cluster string, n int) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("%d agents of cluster %q", n, cluster), func() error {
		if got := len(srv.Agents(cluster)); got != n {
			return fmt.Errorf("%d agents", got)
		}
		return nil
	})
}

// callerConfig is a rest.Config for cluster through ts, authenticating with
// a client certificate.
func (ts *testServer) callerConfig(p *testPKI, cluster string, certPEM, keyPEM []byte) *rest.Config {
	return &rest.Config{
		Host: ts.apiURL + ClustersPathPrefix + cluster,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   p.root.CertPEM,
			CertData: certPEM,
			KeyData:  keyPEM,
		},
		QPS:   -1,
		Burst: -1,
	}
}
