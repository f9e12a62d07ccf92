//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/localcluster"
	"github.com/meshfleet/meshfleet/pkg/localistiod"
	"github.com/meshfleet/meshfleet/pkg/localproc"
	"github.com/meshfleet/meshfleet/pkg/netns"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// Addresses of the tunnel test's echo servers (198.18.3.0/24: no other test
// of the package binds there).
var (
	tnEchoRemote1 = netip.MustParseAddr("198.18.3.1") // echo in remote1, r1/z1
	tnEchoRemote2 = netip.MustParseAddr("198.18.3.2") // echo in remote2, r2/z2
)

var tnWorkloads = map[string]workload{
	"remote1": {name: "echo-remote1", node: "node-r1-z1", region: "r1", zone: "z1", addr: tnEchoRemote1},
	"remote2": {name: "echo-remote2", node: "node-r2-z2", region: "r2", zone: "z2", addr: tnEchoRemote2},
}

// istiodUser is the identity of the primary's istiod service account;
// the tunnel impersonates it in the remotes as istiodRemoteUser. opUser is
// the operator's service account, whose token it presents to the tunnel.
var (
	istiodUser       = mapping.ServiceAccountUser(mcNS, "istiod")
	istiodRemoteUser = render.Istiod.TunnelUser(mcNS)
	opUser           = mapping.ServiceAccountUser(tunnel.DefaultMeshfleetNamespace, "meshfleet-operator")
)

// insecureKubeconfigOptions is istiod's switch that lets remote secrets use
// a tokenFile (pkg/kube.sanitizeKubeConfig refuses it otherwise).
const insecureKubeconfigOptions = "PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS"

// tunnelMesh is an mcMesh whose remotes are reachable only through an
// in-process tunnel server, each by its own in-process agent: the operator
// has no kubeconfig of a remote, and istiod's remote secrets point at the
// tunnel with istiod's own service-account token. The server runs with its
// defaults: only the default identities, tokens for the tunnel's audience,
// agents of clusters with a RemoteIstio.
type tunnelMesh struct {
	*mcMesh
	tunnelCA  *ca.KeyPair
	tunnel    *tunnel.Server
	apiURL    string
	agentURL  string
	tokenFile string
	opToken   string
	tunnelLog string
	agents    map[string]*tunnelAgent
}

type tunnelAgent struct {
	*tunnel.Agent
	stop func()
}

// startTunnelMesh starts the three clusters, the tunnel CA (created before
// the operator, so that the tunnel's certificates chain to it), the tunnel
// server and one agent per remote, the operator with the tunnel, the Istio
// resource, and istiod with the MeshConfig the operator rendered.
func startTunnelMesh(t *testing.T, spec v1beta1.IstioSpec) *tunnelMesh {
	t.Helper()
	if err := netns.Setup(tnEchoRemote1, tnEchoRemote2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	env := testenv.Start(t,
		localcluster.ClusterOptions{Name: mcPrimary},
		localcluster.ClusterOptions{Name: "remote1"},
		localcluster.ClusterOptions{Name: "remote2"},
	)
	t.Logf("3 API servers up in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m := &tunnelMesh{
		mcMesh: &mcMesh{t: t, ctx: ctx, env: env, c: map[string]client.Client{}, kube: map[string]kubernetes.Interface{}},
		agents: map[string]*tunnelAgent{},
	}
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range env.Clusters {
		if m.c[name], err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
		m.kube[name] = kubernetes.NewForConfigOrDie(c.Config)
		mustCreate(t, "serviceaccount default/default in "+name, func() error {
			_, err := m.kube[name].CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			return err
		})
	}
	for _, r := range mcRemotes {
		createNodes(ctx, t, m.kube[r], []workload{tnWorkloads[r]})
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, m.c[mcPrimary], crds); err != nil {
		t.Fatalf("applying meshfleet's CRDs: %v", err)
	}
	m.eventually(30*time.Second, "RemoteIstio kind served", func() error {
		return m.c[mcPrimary].List(ctx, &v1beta1.RemoteIstioList{})
	})
	mustCreate(t, "namespace istio-system", func() error {
		_, err := m.kube[mcPrimary].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mcNS}}, metav1.CreateOptions{})
		return err
	})

	// The tunnel CA the operator keeps, before the operator would create it:
	// the tunnel's certificates are its, never the mesh root's.
	if m.tunnelCA, _, err = meshca.TunnelCA(ctx, m.c[mcPrimary], time.Now()); err != nil {
		t.Fatal(err)
	}

	m.tunnelLog = filepath.Join(env.Dir, "tunnel.log")
	m.startTunnel()
	// The agents start now; the server accepts each once its cluster has a
	// RemoteIstio (createRemoteIstio waits for it).
	for _, r := range mcRemotes {
		m.agents[r] = m.startAgent(r)
	}
	m.tokenFile = filepath.Join(env.Dir, "istiod-token")
	// The operator presents its service account's token for the tunnel's
	// audience, as projected into its pod.
	m.opToken = filepath.Join(env.Dir, "operator-token")
	if err := tunnel.WriteServiceAccountToken(ctx, env.Cluster(mcPrimary).Config, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", m.opToken, time.Hour); err != nil {
		t.Fatal(err)
	}

	m.opLog = filepath.Join(env.Dir, "operator.log")
	f, err := os.Create(m.opLog)
	if err != nil {
		t.Fatal(err)
	}
	mcLogs.set(f)
	mgr, err := operator.New(env.Cluster(mcPrimary).Config, operator.Options{MetricsAddr: "0", HealthAddr: "0", RemoteResync: 2 * time.Second,
		Tunnel: &remoteistio.Tunnel{URL: m.apiURL, CAData: m.tunnelCA.CertPEM, IstiodTokenFile: m.tokenFile, TokenFile: m.opToken}})
	if err != nil {
		t.Fatal(err)
	}
	opCtx, stopOp := context.WithCancel(context.Background())
	opDone := make(chan error, 1)
	go func() { opDone <- mgr.Start(opCtx) }()
	t.Cleanup(func() {
		stopOp()
		if err := <-opDone; err != nil {
			t.Errorf("operator: %v", err)
		}
		if t.Failed() {
			t.Logf("last lines of the operator log %s:\n%s", m.opLog, localproc.TailFile(m.opLog, 40))
			t.Logf("last lines of the tunnel log %s:\n%s", m.tunnelLog, localproc.TailFile(m.tunnelLog, 30))
		}
		mcLogs.set(nil)
		f.Close()
	})

	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: mcNS}, Spec: spec}
	mustCreate(t, "Istio istio-system/istio", func() error { return m.c[mcPrimary].Create(ctx, ist) })
	start = time.Now()
	m.eventually(90*time.Second, "Istio ControlPlaneDeployed", func() error {
		got := &v1beta1.Istio{}
		if err := m.c[mcPrimary].Get(ctx, client.ObjectKeyFromObject(ist), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			return fmt.Errorf("conditions: %s", mcConditions(got.Status.Conditions))
		}
		return nil
	})
	t.Logf("operator deployed the control plane in %v", time.Since(start).Round(time.Millisecond))

	m.writeIstiodToken()

	cm, err := m.kube[mcPrimary].CoreV1().ConfigMaps(mcNS).Get(ctx, "istio", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the rendered ConfigMap istio-system/istio: %v", err)
	}
	start = time.Now()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	defer scancel()
	m.istiod = startIstiod(sctx, t, localistiod.Options{
		Kubeconfig: env.Cluster(mcPrimary).Kubeconfig,
		Dir:        filepath.Join(env.Dir, "istiod"),
		ClusterID:  mcPrimary,
		MeshConfig: cm.Data["mesh"],
		Env:        m.istiodEnv(),
	})
	t.Logf("istiod ready in %v", time.Since(start).Round(time.Millisecond))
	return m
}

// startTunnel runs the tunnel server on 127.0.0.1: agents must present a
// certificate of the tunnel CA and have a RemoteIstio; callers a client
// certificate of the primary's CA or a token the primary issued for the
// tunnel's audience (istiod, the operator), and be on the default access
// policy.
func (m *tunnelMesh) startTunnel() {
	t := m.t
	serving, err := tunnel.IssueServerCertificate(m.tunnelCA, []string{"127.0.0.1"}, tunnel.CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := serving.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	primary := m.env.Cluster(mcPrimary)
	clientCAs, err := tunnel.CABundleFromPEM(primary.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	reviews, err := kubernetes.NewForConfig(primary.Config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(primary.Config)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(m.tunnelLog)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(&lockedWriter{w: logf}, nil)).With("component", "tunnel-server")
	m.tunnel, err = tunnel.NewServer(tunnel.ServerOptions{
		ServingCertificate: tunnel.StaticKeyPair(cert), AgentCAs: tunnel.StaticCABundle(m.tunnelCA.Cert), ClientCAs: clientCAs,
		TokenReviews: reviews.AuthenticationV1().TokenReviews(),
		Clusters:     tunnel.RemoteIstioClusters(m.ctx, dyn, mcNS, log),
		PingInterval: 200 * time.Millisecond,
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.apiURL, m.agentURL = "https://"+apiLn.Addr().String(), "https://"+agentLn.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.tunnel.Serve(ctx, apiLn, agentLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tunnel server: %v", err)
		}
		logf.Close()
	})
	t.Logf("tunnel server: API %s, agents %s, log %s", m.apiURL, m.agentURL, m.tunnelLog)
}

// startAgent installs the agent manifest's RBAC in a remote (with its admin
// credentials) and runs the tunnel agent of that remote, with a certificate
// of the tunnel CA for that cluster; it forwards with the agent service
// account's token. It does not wait for the server to accept the agent.
func (m *tunnelMesh) startAgent(cluster string) *tunnelAgent {
	t := m.t
	leaf, err := tunnel.IssueAgentCertificate(m.tunnelCA, cluster, tunnel.CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := tunnel.InstallAgentRBAC(m.ctx, m.env.Cluster(cluster).Config, 3600)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(m.tunnelLog, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tunnel.NewAgent(tunnel.AgentOptions{
		Cluster: cluster, ID: "agent-" + cluster, Servers: []string{m.agentURL}, Certificate: tunnel.StaticKeyPair(cert), ServerCAs: tunnel.StaticCABundle(m.tunnelCA.Cert),
		Upstream:       upstream,
		BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second,
		Logger: slog.New(slog.NewJSONHandler(&lockedWriter{w: logf}, nil)).With("component", "tunnel-agent"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; logf.Close() }) }
	t.Cleanup(stop)
	return &tunnelAgent{Agent: a, stop: stop}
}

// waitAgent waits until the server has accepted cluster's agent.
func (m *tunnelMesh) waitAgent(cluster string) {
	a := m.agents[cluster]
	m.eventually(15*time.Second, "tunnel agent of "+cluster+" connected", func() error {
		if len(m.tunnel.Agents(cluster)) == 0 {
			return fmt.Errorf("no agent of %s at the server; agent status %+v", cluster, a.Status())
		}
		return nil
	})
}

// writeIstiodToken writes a token of the primary's istio-system/istiod
// service account for the tunnel's audience (the TokenRequest API, 1 h)
// where the remote secrets say istiod finds it, as the kubelet projects it
// into istiod's pod (the volume the operator renders).
func (m *tunnelMesh) writeIstiodToken() {
	t := m.t
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: mcNS}}
	if _, err := m.kube[mcPrimary].CoreV1().ServiceAccounts(mcNS).Create(m.ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating ServiceAccount %s/istiod: %v", mcNS, err)
	}
	secs := int64(time.Hour.Seconds())
	tr, err := m.kube[mcPrimary].CoreV1().ServiceAccounts(mcNS).CreateToken(m.ctx, "istiod",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs, Audiences: []string{tunnel.TokenAudience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/istiod: %v", mcNS, err)
	}
	if err := os.WriteFile(m.tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
}

// istiodEnv is the extra environment of the out-of-cluster istiod: what the
// rendered istiod Deployment says about tokenFile in remote secrets. Real
// istiod refuses a remote secret with a tokenFile unless
// PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS allows it; if the rendered
// Deployment does not, the test sets it (and says so), as the remote
// secrets written for tunnelled clusters need it.
func (m *tunnelMesh) istiodEnv() []string {
	t := m.t
	d := &appsv1.Deployment{}
	if err := m.c[mcPrimary].Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: "istiod"}, d); err != nil {
		t.Fatalf("reading the rendered istiod Deployment: %v", err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == insecureKubeconfigOptions {
				t.Logf("rendered istiod Deployment sets %s=%s", e.Name, e.Value)
				return []string{e.Name + "=" + e.Value}
			}
		}
	}
	t.Logf("NOTE: the rendered istiod Deployment does not set %s=tokenFile, without which istiod refuses the tunnel's remote secrets (\"tokenFile is not allowed\"); the test sets it", insecureKubeconfigOptions)
	return []string{insecureKubeconfigOptions + "=tokenFile"}
}

// createEcho creates the echo Service in every cluster and, in each remote,
// its Pod and EndpointSlice, served by a real gRPC server.
func (m *tunnelMesh) createEcho() {
	m.t.Helper()
	createEchoService(m.ctx, m.t, m.kube[mcPrimary], nil)
	for _, r := range mcRemotes {
		w := tnWorkloads[r]
		createEchoService(m.ctx, m.t, m.kube[r], []workload{w})
		mustCreate(m.t, "endpointslice default/echo-1 in "+r, func() error {
			_, err := m.kube[r].DiscoveryV1().EndpointSlices("default").Create(m.ctx, echoSlice([]workload{w}, nil), metav1.CreateOptions{})
			return err
		})
		startEchoServer(m.t, w.addr, echoPort)
	}
}

// createRemoteIstio creates a RemoteIstio without kubeconfigSecretRef: the
// operator reaches the cluster through the tunnel.
func (m *tunnelMesh) createRemoteIstio(remote string) {
	m.t.Helper()
	ri := &v1beta1.RemoteIstio{
		ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: mcNS},
		Spec: v1beta1.RemoteIstioSpec{
			PilotAddress:            mcPilotAddress,
			AutoInjectionNamespaces: []string{"default"},
		},
	}
	mustCreate(m.t, "RemoteIstio "+remote, func() error { return m.c[mcPrimary].Create(m.ctx, ri) })
	m.waitAgent(remote)
}

// expectConnected waits until RemoteIstio remote has Connected=False with
// reason and a message containing msg, and returns the condition.
func (m *tunnelMesh) expectConnected(remote, reason, msg string, timeout time.Duration) metav1.Condition {
	m.t.Helper()
	var got metav1.Condition
	m.eventually(timeout, fmt.Sprintf("RemoteIstio %s Connected=False %s %q", remote, reason, msg), func() error {
		ri := &v1beta1.RemoteIstio{}
		if err := m.c[mcPrimary].Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: remote}, ri); err != nil {
			return err
		}
		c := meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("conditions: %s", mcConditions(ri.Status.Conditions))
		}
		got = *c
		return nil
	})
	return got
}

// proxiedBy counts the tunnel's audit lines ("proxied request") of user,
// authenticated by auth (x509 or token), per cluster and status code.
func (m *tunnelMesh) proxiedBy(user, auth string) map[string]map[int]int {
	out := map[string]map[int]int{}
	f, err := os.Open(m.tunnelLog)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg     string `json:"msg"`
			Cluster string `json:"cluster"`
			User    string `json:"user"`
			Auth    string `json:"auth"`
			Code    int    `json:"code"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "proxied request" || l.User != user || l.Auth != auth {
			continue
		}
		if out[l.Cluster] == nil {
			out[l.Cluster] = map[int]int{}
		}
		out[l.Cluster][l.Code]++
	}
	return out
}

// lockedWriter serializes writes of the loggers sharing one file.
type lockedWriter struct{ w *os.File }

var tunnelLogMu sync.Mutex

func (l *lockedWriter) Write(p []byte) (int, error) {
	tunnelLogMu.Lock()
	defer tunnelLogMu.Unlock()
	return l.w.Write(p)
}
