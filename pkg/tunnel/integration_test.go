//go:build integration

package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// The shared environment: a primary (which the server authenticates
// callers against) and two remotes (reached through agents).
var (
	kube *testenv.Env
	// agentUpstream is each remote's API server with the agent service
	// account's token, which may only impersonate.
	agentUpstream = map[string]*rest.Config{}
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	env, stop, err := testenv.StartShared(ctx, "",
		localcluster.ClusterOptions{Name: "primary"},
		localcluster.ClusterOptions{Name: "remote1", AuditLog: true},
		localcluster.ClusterOptions{Name: "remote2"},
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kube = env
	for _, name := range []string{"remote1", "remote2"} {
		if agentUpstream[name], err = setUpRemote(ctx, env.Cluster(name)); err != nil {
			fmt.Fprintf(os.Stderr, "setting up cluster %s: %v\n", name, err)
			stop()
			os.Exit(1)
		}
	}
	cancel()
	code := m.Run()
	stop()
	os.Exit(code)
}

// testUsers are the tests' callers, allowed by testAccess, as the agent
// must be allowed to impersonate them: their mapped names and groups.
var (
	testUsers  = []string{"meshfleet:alice", "meshfleet:mallory", "meshfleet:system:serviceaccount:default:bob"}
	testGroups = []string{"meshfleet:interns", "meshfleet:system:masters", "meshfleet:system:nodes",
		"meshfleet:system:serviceaccounts", "meshfleet:system:serviceaccounts:default"}
)

// setUpRemote installs the agent's RBAC from manifests/tunnel/agent.yaml
// (impersonation limited to the default identities' mapped names), lets
// the agent impersonate the tests' users too (as a server configured to
// allow more callers needs), grants those their roles and returns the
// agent's upstream configuration.
func setUpRemote(ctx context.Context, c *localcluster.Cluster) (*rest.Config, error) {
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	upstream, err := InstallAgentRBAC(ctx, c.Config, 3600)
	if err != nil {
		return nil, err
	}
	objs := []func() error{
		func() error {
			_, err := client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "meshfleet-tunnel-agent-test-users"},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{""}, Resources: []string{"users"}, Verbs: []string{"impersonate"}, ResourceNames: testUsers},
					{APIGroups: []string{""}, Resources: []string{"groups"}, Verbs: []string{"impersonate"}, ResourceNames: testGroups},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			return bind(ctx, client, "meshfleet-tunnel-agent-test-users", rbacv1.ServiceAccountKind, AgentServiceAccount, AgentNamespace)
		},
		func() error { return bind(ctx, client, "cluster-admin", rbacv1.UserKind, "meshfleet:alice", "") },
		func() error {
			// "view" is aggregated by kube-controller-manager, which does not run here.
			_, err := client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "reader"},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps", "namespaces"}, Verbs: []string{"get", "list", "watch"}}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			return bind(ctx, client, "reader", rbacv1.UserKind, "meshfleet:system:serviceaccount:default:bob", "")
		},
	}
	for _, f := range objs {
		if err := f(); err != nil {
			return nil, err
		}
	}
	return upstream, nil
}

func bind(ctx context.Context, client kubernetes.Interface, role, kind, name, ns string) error {
	subj := rbacv1.Subject{Kind: kind, Name: name, Namespace: ns}
	if kind == rbacv1.UserKind {
		subj.APIGroup = rbacv1.GroupName
	}
	_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role + "-" + strings.ReplaceAll(name, ":", "-")},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{subj},
	}, metav1.CreateOptions{})
	return err
}

// kubeTunnel is a server authenticating against the primary and one agent per
// listed remote.
type kubeTunnel struct {
	pki    *testPKI
	server *testServer
}

func startKubeTunnel(t *testing.T, remotes ...string) *kubeTunnel {
	t.Helper()
	p := newTestPKI(t, "remote1", "remote2")
	primary := kube.Cluster("primary")
	clientCAs, err := CABundleFromPEM(primary.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	ts := startTestServer(t, p, ServerOptions{
		ClientCAs:    clientCAs,
		TokenReviews: kubernetes.NewForConfigOrDie(primary.Config).AuthenticationV1().TokenReviews(),
	})
	for _, r := range remotes {
		startTestAgent(t, p, r, p.agentCert(t, r, r), agentUpstream[r], ts.agentURL)
		waitAgents(t, ts.Server, r, 1)
	}
	return &kubeTunnel{pki: p, server: ts}
}

// userConfig reaches cluster through the tunnel as user, authenticated by a
// client certificate from the primary's CA.
func (k *kubeTunnel) userConfig(t *testing.T, cluster, user string, groups ...string) *rest.Config {
	t.Helper()
	uc, err := kube.Cluster("primary").UserConfig(user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return k.server.callerConfig(k.pki, cluster, uc.CertData, uc.KeyData)
}

func clientFor(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createNamespace(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	if _, err := c.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s through the tunnel: %v", name, err)
	}
}

func TestClientGoGetListCreateWatch(t *testing.T) {
	ctx := t.Context()
	k := startKubeTunnel(t, "remote1")
	c := clientFor(t, k.userConfig(t, "remote1", "alice"))
	createNamespace(t, c, "cgo")
	w, err := c.CoreV1().ConfigMaps("cgo").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := c.CoreV1().ConfigMaps("cgo").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "hello"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		cm, ok := ev.Object.(*corev1.ConfigMap)
		if ev.Type != watch.Added || !ok || cm.Name != "hello" {
			t.Fatalf("watch event %s %T, want ADDED hello", ev.Type, ev.Object)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch saw no event")
	}
	got, err := c.CoreV1().ConfigMaps("cgo").Get(ctx, "hello", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("get: %v %v", got, err)
	}
	list, err := c.CoreV1().ConfigMaps("cgo").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) == 0 {
		t.Fatalf("list: %v %v", list, err)
	}
	// The object exists in remote1 (and not in remote2).
	if _, err := kubernetes.NewForConfigOrDie(kube.Cluster("remote1").Config).CoreV1().ConfigMaps("cgo").Get(ctx, "hello", metav1.GetOptions{}); err != nil {
		t.Errorf("configmap not in remote1: %v", err)
	}

	// The remote's audit log shows the agent's service account acting as
	// alice.
	waitFor(t, "impersonated create in remote1's audit log", func() bool {
		b, _ := os.ReadFile(kube.Cluster("remote1").AuditLogPath)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"verb":"create"`) && strings.Contains(line, `"resource":"configmaps"`) &&
				strings.Contains(line, `"impersonatedUser":{"username":"meshfleet:alice"`) &&
				strings.Contains(line, `"username":"system:serviceaccount:meshfleet-system:meshfleet-tunnel-agent"`) {
				return true
			}
		}
		return false
	})
}

func TestRBACOfRemoteDecides(t *testing.T) {
	ctx := t.Context()
	k := startKubeTunnel(t, "remote1")
	c := clientFor(t, k.userConfig(t, "remote1", "mallory", "interns"))
	_, err := c.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `"meshfleet:mallory"`) {
		t.Fatalf("list secrets as mallory: %v, want Forbidden for mallory", err)
	}
}

func TestBearerTokenCheckedWithTokenReview(t *testing.T) {
	ctx := t.Context()
	k := startKubeTunnel(t, "remote1")
	primary := kubernetes.NewForConfigOrDie(kube.Cluster("primary").Config)
	if _, err := primary.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bob"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tok, err := primary.CoreV1().ServiceAccounts("default").CreateToken(ctx, "bob",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{TokenAudience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := k.server.callerConfig(k.pki, "remote1", nil, nil)
	cfg.BearerToken = tok.Status.Token
	c := clientFor(t, cfg)
	// bob may view in remote1 but not create.
	if _, err := c.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list as bob: %v", err)
	}
	_, err = c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "meshfleet:system:serviceaccount:default:bob") {
		t.Fatalf("create as bob: %v, want Forbidden for bob", err)
	}

	cfg.BearerToken = "not-a-token"
	if _, err := clientFor(t, cfg).CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("invalid token: %v, want Unauthorized", err)
	}
	cfg.BearerToken = ""
	if _, err := clientFor(t, cfg).CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("no credentials: %v, want Unauthorized", err)
	}
}

func TestKubectl(t *testing.T) {
	k := startKubeTunnel(t, "remote1")
	cfg := k.userConfig(t, "remote1", "alice")
	dir := t.TempDir()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["remote1"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["alice"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["remote1"] = &clientcmdapi.Context{Cluster: "remote1", AuthInfo: "alice"}
	kc.CurrentContext = "remote1"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kube.Bins.Kubectl, append([]string{"--kubeconfig=" + path, "--cache-dir=" + filepath.Join(dir, "cache")}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	kubectl("create", "namespace", "kctl")
	kubectl("-n", "kctl", "create", "configmap", "from-kubectl", "--from-literal=a=b")
	if out := kubectl("-n", "kctl", "get", "configmaps", "-o", "name"); !strings.Contains(out, "configmap/from-kubectl") {
		t.Errorf("kubectl get: %s", out)
	}
	if out := kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); out != "meshfleet:alice" {
		t.Errorf("kubectl auth whoami = %q, want meshfleet:alice", out)
	}
	if out := kubectl("api-resources", "-o", "name"); !strings.Contains(out, "deployments.apps") {
		t.Errorf("kubectl api-resources: %s", out)
	}
}

// A large list read slowly while many small requests run: the slow stream
// stalls only itself.
func TestLongStreamWithConcurrentSmallRequests(t *testing.T) {
	ctx := t.Context()
	k := startKubeTunnel(t, "remote1")
	cfg := k.userConfig(t, "remote1", "alice")
	c := clientFor(t, cfg)
	createNamespace(t, c, "stream")
	admin := kubernetes.NewForConfigOrDie(kube.Cluster("remote1").Config)
	const n, size = 30, 200 << 10
	for i := range n {
		if _, err := admin.CoreV1().ConfigMaps("stream").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i)},
			Data:       map[string]string{"blob": strings.Repeat("x", size)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(cfg.Host + "/api/v1/namespaces/stream/configmaps")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 1024)
	if _, err := br.Peek(1); err != nil {
		t.Fatal(err)
	}
	// The list (~6 MB) is now stalled on flow control.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if _, err := c.CoreV1().Namespaces().Get(ctx, "stream", metav1.GetOptions{}); err != nil {
				t.Errorf("small request %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	total, err := io.Copy(io.Discard, br)
	if err != nil || total < n*size {
		t.Fatalf("long response: read %d bytes, %v", total, err)
	}
}

// A WebSocket upgrade on the API server's own watch endpoint: the hijack and
// splice path of both the server and the agent, against a real API server.
func TestWebSocketUpgradeToAPIServer(t *testing.T) {
	ctx := t.Context()
	k := startKubeTunnel(t, "remote1")
	cfg := k.userConfig(t, "remote1", "alice")
	createNamespace(t, clientFor(t, cfg), "ws")
	cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: k.pki.roots, Certificates: []tls.Certificate{cert}}, HandshakeTimeout: 10 * time.Second}
	u := strings.Replace(cfg.Host, "https://", "wss://", 1) + "/api/v1/namespaces/ws/configmaps?watch=true"
	conn, resp, err := d.Dial(u, http.Header{"Origin": {"https://test"}})
	if err != nil {
		t.Fatalf("websocket dial %s: %v (response %v)", u, err, resp)
	}
	defer conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	admin := kubernetes.NewForConfigOrDie(kube.Cluster("remote1").Config)
	if _, err := admin.CoreV1().ConfigMaps("ws").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "over-websocket"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, msg, err := conn.ReadMessage()
	if err != nil || !strings.Contains(string(msg), `"over-websocket"`) || !strings.Contains(string(msg), `"ADDED"`) {
		t.Fatalf("websocket watch message %q, %v", msg, err)
	}
	// Bytes the other way: a close frame, answered by the API server.
	if err := conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			break
		}
	}
}

func TestForeignAgentIsRejected(t *testing.T) {
	k := startKubeTunnel(t, "remote1")
	// remote2's certificate, used by an agent configured as remote1.
	a := startTestAgent(t, k.pki, "remote1", k.pki.agentCert(t, "remote2", "remote2"), agentUpstream["remote2"], k.server.agentURL)
	waitFor(t, "agent rejection", func() bool { return a.Status().LastError != nil })
	if err := a.Status().LastError; !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), `for cluster "remote2"`) {
		t.Fatalf("agent error %v, want 403 naming remote2", err)
	}
	if agents := k.server.Agents("remote1"); len(agents) != 1 {
		t.Fatalf("remote1 agents: %+v", agents)
	}
}

func TestAgentKillMovesTraffic(t *testing.T) {
	ctx := t.Context()
	k := startKubeTunnel(t)
	a1 := startTestAgent(t, k.pki, "remote2", k.pki.agentCert(t, "remote2", "remote2"), agentUpstream["remote2"], k.server.agentURL)
	a2 := startTestAgent(t, k.pki, "remote2", k.pki.agentCert(t, "remote2", "remote2"), agentUpstream["remote2"], k.server.agentURL)
	waitAgents(t, k.server.Server, "remote2", 2)
	c := clientFor(t, k.userConfig(t, "remote2", "alice"))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, a := range k.server.Agents("remote2") {
		if a.Served == 0 {
			t.Errorf("agent %s served nothing: requests were not spread", a.ID)
		}
	}
	a1.stop()
	for i := range 30 {
		if _, err := c.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("request %d after killing agent %s: %v", i, a1.ID(), err)
		}
	}
	agents := k.server.Agents("remote2")
	if len(agents) != 1 || agents[0].ID != a2.ID() {
		t.Fatalf("agents after the kill: %+v", agents)
	}
}

func TestLeaseTakeover(t *testing.T) {
	ctx := t.Context()
	p := newTestPKI(t, "remote1")
	primary := kube.Cluster("primary")
	clientCAs, err := CABundleFromPEM(primary.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(primary.Config)
	// Each server's Pod, which it labels with its role for the Services.
	if _, err := client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, id := range []string{"server-1", "server-2"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "meshfleet"}}}}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	role := func(id string) func() bool {
		return func() bool {
			pod, err := client.CoreV1().Pods("default").Get(ctx, id, metav1.GetOptions{})
			return err == nil && pod.Labels[RoleLabel] == RoleActive
		}
	}
	newServer := func(id string) *testServer {
		return startTestServer(t, p, ServerOptions{
			ClientCAs: clientCAs,
			Lease: &LeaseOptions{
				Client: client, Namespace: "default", Name: "tunnel-takeover", Identity: id,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
				PodNamespace: "default", PodName: id,
			},
		})
	}
	s1 := newServer("server-1")
	waitFor(t, "server-1 active", s1.Active)
	waitFor(t, "server-1's pod labelled active", role("server-1"))
	s2 := newServer("server-2")
	startTestAgent(t, p, "remote1", p.agentCert(t, "remote1", "remote1"), agentUpstream["remote1"], s1.agentURL, s2.agentURL)
	waitAgents(t, s1.Server, "remote1", 1)
	if s2.Active() {
		t.Fatal("two active servers")
	}
	uc, err := primary.UserConfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	get := func(s *testServer) error {
		_, err := clientFor(t, s.callerConfig(p, "remote1", uc.CertData, uc.KeyData)).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}
	if err := get(s1); err != nil {
		t.Fatalf("through the active server: %v", err)
	}
	if err := get(s2); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("through the standby: %v, want 503", err)
	}

	if role("server-2")() {
		t.Error("the standby's pod is labelled active")
	}
	s1.stop() // releases the lease
	waitFor(t, "server-2 takes over", s2.Active)
	waitFor(t, "server-2's pod labelled active", role("server-2"))
	if role("server-1")() {
		t.Error("the stopped server's pod is still labelled active")
	}
	waitAgents(t, s2.Server, "remote1", 1)
	if err := get(s2); err != nil {
		t.Fatalf("through the new active server: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
