package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
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
	// Primary, when set, is the primary cluster: its RemoteIstios are the
	// clusters whose agents are accepted (unless Clusters is set), and it
	// reviews tokens (unless TokenReviews is set).
	Primary *rest.Config
	// Clusters are the clusters whose agents are accepted.
	Clusters *ClusterSet
	// Access is the access policy; the default one if nil.
	Access *AccessPolicy
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
	var clientCAs *CABundle
	if len(opts.ClientCAPEM) > 0 {
		if clientCAs, err = CABundleFromPEM(opts.ClientCAPEM); err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if opts.Primary != nil {
		kube, err := kubernetes.NewForConfig(opts.Primary)
		if err != nil {
			cancel()
			return nil, err
		}
		if opts.TokenReviews == nil {
			opts.TokenReviews = kube.AuthenticationV1().TokenReviews()
		}
		if opts.Clusters == nil {
			dyn, err := dynamic.NewForConfig(opts.Primary)
			if err != nil {
				cancel()
				return nil, err
			}
			opts.Clusters = RemoteIstioClusters(ctx, dyn, "", opts.Logger)
		}
	}
	srv, err := NewServer(ServerOptions{ServingCertificate: StaticKeyPair(cert), AgentCAs: StaticCABundle(opts.Root.Cert), ClientCAs: clientCAs,
		TokenReviews: opts.TokenReviews, Clusters: opts.Clusters, Access: opts.Access,
		PingInterval: time.Second, Logger: opts.Logger.With("component", "tunnel-server")})
	if err != nil {
		cancel()
		return nil, err
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		apiLn.Close()
		return nil, err
	}
	l := &Local{Server: srv, APIURL: "https://" + apiLn.Addr().String(), AgentURL: "https://" + agentLn.Addr().String(),
		root: opts.Root, log: opts.Logger}
	l.stops = append(l.stops, cancel)
	l.goRun(func(ctx context.Context) { _ = srv.Serve(ctx, apiLn, agentLn) })
	return l, nil
}

// StartAgent installs the agent's RBAC in cluster with admin's credentials
// (as applying manifests/tunnel/agent.yaml there would) and runs an agent
// of cluster with a certificate of the root for that cluster, forwarding
// with the agent service account's token. The returned func stops it.
func (l *Local) StartAgent(cluster string, admin *rest.Config) (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	upstream, err := InstallAgentRBAC(ctx, admin, 24*3600)
	if err != nil {
		return nil, fmt.Errorf("install the tunnel agent's RBAC in cluster %s: %w", cluster, err)
	}
	leaf, err := IssueAgentCertificate(l.root, cluster, CertificateOptions{TTL: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		return nil, err
	}
	a, err := NewAgent(AgentOptions{Cluster: cluster, ID: "agent-" + cluster, Servers: []string{l.AgentURL},
		Certificate: StaticKeyPair(cert), ServerCAs: StaticCABundle(l.root.Cert), Upstream: upstream, BackoffInitial: 50 * time.Millisecond, BackoffMax: 2 * time.Second,
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

// WriteServiceAccountToken writes a token of the primary's service account
// namespace/name for the tunnel's audience (TokenAudience) to file, creating
// the namespace and service account if they are missing: what the kubelet
// projects into the pod of a component that uses the tunnel.
func WriteServiceAccountToken(ctx context.Context, primary *rest.Config, namespace, name, file string, ttl time.Duration) error {
	kube, err := kubernetes.NewForConfig(primary)
	if err != nil {
		return err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := kube.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	secs := int64(ttl.Seconds())
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{TokenAudience}, ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token of %s/%s for audience %s: %w", namespace, name, TokenAudience, err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(tr.Status.Token), 0o600)
}
