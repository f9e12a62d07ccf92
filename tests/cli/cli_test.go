//go:build integration

// Package cli drives the built meshctl binary as a user would, against real
// kube-apiservers with the operator running.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

type cli struct {
	t       *testing.T
	bin     string
	env     *testenv.Env
	primary string // kubeconfig
	ctx     context.Context
}

// run runs meshctl and returns its combined output and exit code.
func (c *cli) run(args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.CommandContext(c.ctx, c.bin, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("meshctl %s: %v", strings.Join(args, " "), err)
	}
	return string(out), code
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("meshctl %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func TestMeshctl(t *testing.T) {
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
	bin := filepath.Join(t.TempDir(), "meshctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshfleet/meshfleet/cmd/meshctl").CombinedOutput(); err != nil {
		t.Fatalf("build meshctl: %v\n%s", err, out)
	}
	env := testenv.Start(t,
		// Deployments roll out as on a cluster: the deployment and
		// replicaset controllers create Pods, kwok makes them Ready.
		localcluster.ClusterOptions{Name: "primary", ControllerManager: true, Controllers: localcluster.RolloutControllers, FakeNodes: true},
		localcluster.ClusterOptions{Name: "remote1"},
		localcluster.ClusterOptions{Name: "remote2"},
	)
	ctx := testenv.Context(t)
	c := &cli{t: t, bin: bin, env: env, primary: env.Cluster("primary").Kubeconfig, ctx: ctx}
	k := "--kubeconfig=" + c.primary

	// The operator runs in-process here (no kubelet to run its image); it
	// needs meshfleet's CRDs before it starts.
	scheme, _ := operator.Scheme()
	pc, err := client.New(env.Cluster("primary").Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, pc, crds); err != nil {
		t.Fatal(err)
	}
	// remote2 joins through the tunnel: a tunnel server with a certificate
	// of the tunnel CA, which the operator keeps (created here up front, as
	// the tunnel server's installer would).
	tunnelCA, _, err := meshca.TunnelCA(ctx, pc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tun := startTunnel(t, tunnelCA, env.Cluster("primary"))
	// The operator presents its token for the tunnel's audience.
	opToken := filepath.Join(t.TempDir(), "operator-token")
	if err := tunnel.WriteServiceAccountToken(ctx, env.Cluster("primary").Config, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", opToken, time.Hour); err != nil {
		t.Fatal(err)
	}
	mgr, err := operator.New(env.Cluster("primary").Config, operator.Options{MetricsAddr: "0", HealthAddr: "0", RemoteResync: 2 * time.Second,
		Tunnel: &remoteistio.Tunnel{URL: tun.APIURL, CAData: tunnelCA.CertPEM, IstiodTokenFile: render.TunnelTokenPath, TokenFile: opToken}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()

	t.Run("install --dry-run prints the manifests", func(t *testing.T) {
		out := c.ok("install", "--dry-run", "--version", "1.30.3", "--operator-image", "example.com/meshfleet:test")
		for _, want := range []string{"kind: CustomResourceDefinition", "kind: Deployment", "image: example.com/meshfleet:test", "kind: Istio"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run lacks %q", want)
			}
		}
	})
	t.Run("install checks, applies and waits until Ready", func(t *testing.T) {
		start := time.Now()
		out := c.ok("install", k, "--version", "1.30.3", "--cluster-name", "primary", "--mode", "flatNetwork", "--skip-operator", "--wait", "2m")
		t.Logf("BENCH meshctl install → Ready: %v", time.Since(start).Round(time.Millisecond))
		for _, want := range []string{"√ can reach the Kubernetes API", "√ Kubernetes version is supported", "√ has the permissions to install", "Ready", "The control plane is Ready"} {
			if !strings.Contains(out, want) {
				t.Errorf("install output lacks %q:\n%s", want, out)
			}
		}
	})
	// The locality server, as the rendered Deployment would run it (nothing
	// runs pods here): its writer publishes its health for meshctl status.
	loc := startLocality(t, ctx, env.Cluster("primary").Config, "meshfleet-locality-0")
	t.Run("status shows the locality server's health", func(t *testing.T) {
		loc.memberDown.Store(true)
		loc.srv.Notify()
		out := c.statusUntil(t, 1, "locality server          degraded: member remote-x not synced since")
		if !strings.Contains(out, "problem: LocalityServer (degraded): member remote-x not synced since") {
			t.Errorf("status does not count the unsynced member as a problem:\n%s", out)
		}
		t.Logf("member not synced: %s", lineOf(out, "  locality server"))
		loc.memberDown.Store(false)
		loc.srv.Notify()
		out = c.statusUntil(t, 0, "locality server          OK: 1 member synced")
		t.Logf("every member synced: %s", lineOf(out, "  locality server"))
		// Stopped, it releases its Lease: the summary it left is stale and
		// reads as not running, not as healthy.
		loc.stop()
		out = c.statusUntil(t, 1, "locality server          not running: Lease istio-system/meshfleet-locality released")
		if !strings.Contains(out, "problem: LocalityServer (not running)") {
			t.Errorf("status does not count the stopped locality server as a problem:\n%s", out)
		}
		t.Logf("stopped: %s", lineOf(out, "  locality server"))
		// Restarted as another pod would be, for the rest of the test
		// (stopped with the parent test): OK once it has published.
		loc = startLocality(c.t, ctx, env.Cluster("primary").Config, "meshfleet-locality-1")
		c.statusUntil(t, 0, "writer meshfleet-locality-1")
	})
	t.Run("status shows the control plane Ready, as JSON too", func(t *testing.T) {
		out := c.ok("status", k)
		if !strings.Contains(out, "primary") || !strings.Contains(out, "Ready") {
			t.Errorf("status:\n%s", out)
		}
		var parsed struct {
			Clusters []struct{ Name, Role, Phase string }
		}
		if err := json.Unmarshal([]byte(c.ok("status", k, "-o", "json")), &parsed); err != nil {
			t.Fatalf("status -o json does not parse: %v", err)
		}
		if len(parsed.Clusters) != 1 || parsed.Clusters[0].Phase != "Ready" {
			t.Errorf("status -o json: %+v", parsed)
		}
	})
	t.Run("join a cluster directly", func(t *testing.T) {
		start := time.Now()
		out := c.ok("cluster", "join", "remote1", k, "--remote-kubeconfig", env.Cluster("remote1").Kubeconfig, "--pilot-address", "203.0.113.10", "--inject", "default", "--wait", "2m")
		t.Logf("BENCH meshctl cluster join → Ready: %v", time.Since(start).Round(time.Millisecond))
		if !strings.Contains(out, "Cluster remote1 joined the mesh") {
			t.Errorf("join output:\n%s", out)
		}
		list := c.ok("cluster", "list", k)
		if !strings.Contains(list, "remote1") || !strings.Contains(list, "Direct") || strings.Count(list, "Ready") != 2 {
			t.Errorf("cluster list:\n%s", list)
		}
		status := c.ok("status", k)
		if !strings.Contains(status, "intermediate CA expires") {
			t.Errorf("status lacks the CA expiry:\n%s", status)
		}
	})
	t.Run("join through the tunnel: the printed agent connects and the cluster is Ready", func(t *testing.T) {
		agentServer := strings.TrimPrefix(tun.AgentURL, "https://")
		// Run by an admin who may create RemoteIstios and read this
		// cluster's agent certificate, and nothing else: not the root.
		joiner := c.joinerKubeconfig(pc, "joiner", "remote2")
		if out, _ := c.env.Kubectl(ctx, "primary", "auth", "can-i", "get", "secret/"+meshca.RootSecretName, "-n", meshca.Namespace, "--as", "joiner"); strings.TrimSpace(out) != "no" {
			t.Fatalf("the joining user may read the root (can-i: %q); the test would prove nothing", out)
		}
		out := c.ok("cluster", "join", "remote2", "--kubeconfig="+joiner, "--tunnel", "--tunnel-server", agentServer, "--pilot-address", "203.0.113.10")
		// Play the remote's kubelet: run the agent the manifest describes,
		// with the certificate it carries, issued by the operator from the
		// tunnel CA.
		secret := agentSecret(t, out)
		checkAgentCert(t, secret, tunnelCA, "remote2")
		runAgent(t, ctx, "remote2", secret, "https://"+agentServer, env.Cluster("remote2").Config)
		start := time.Now()
		deadline := time.Now().Add(90 * time.Second)
		var list string
		for time.Now().Before(deadline) {
			list = c.ok("cluster", "list", k)
			if line := lineOf(list, "remote2"); strings.Contains(line, "Ready") && strings.Contains(line, "Tunnel") {
				t.Logf("BENCH agent started → remote2 Ready through the tunnel: %v", time.Since(start).Round(time.Millisecond))
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if line := lineOf(list, "remote2"); !strings.Contains(line, "Ready") || !strings.Contains(line, "Tunnel") {
			t.Fatalf("remote2 not Ready through the tunnel:\n%s\n%s", list, c.ok("status", k))
		}
		// The first tunnelled remote gives the primary's locality server a
		// projected tunnel token: its Deployment rolls (on kwok's nodes, as
		// on a cluster), and the primary reads Installing until it has.
		testenv.Eventually(t, 90*time.Second, "primary, remote1 and remote2 Ready", func() error {
			if list := c.ok("cluster", "list", k); strings.Count(list, "Ready") != 3 {
				return fmt.Errorf("cluster list:\n%s", list)
			}
			return nil
		})
		c.ok("cluster", "leave", "remote2", k)
	})
	t.Run("join through the tunnel with --remote-kubeconfig applies the agent there", func(t *testing.T) {
		agentServer := strings.TrimPrefix(tun.AgentURL, "https://")
		remote, err := client.New(env.Cluster("remote2").Config, client.Options{Scheme: scheme})
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			out  string
			code int
		}
		done := make(chan result, 1)
		go func() {
			out, code := c.run("cluster", "join", "remote2", k, "--tunnel", "--tunnel-server", agentServer, "--pilot-address", "203.0.113.10",
				"--remote-kubeconfig", env.Cluster("remote2").Kubeconfig, "--agent-image", "registry.example.com/meshfleet/meshfleet:v9", "--wait", "2m")
			done <- result{out, code}
		}()
		// Play the remote's kubelet: run the agent join applied there,
		// with the Secret it applied.
		dep := &appsv1.Deployment{}
		secret := &corev1.Secret{}
		deadline := time.Now().Add(90 * time.Second)
		for {
			err1 := remote.Get(ctx, client.ObjectKey{Namespace: "meshfleet-system", Name: "meshfleet-tunnel-agent"}, dep)
			err2 := remote.Get(ctx, client.ObjectKey{Namespace: "meshfleet-system", Name: "meshfleet-tunnel-agent-tls"}, secret)
			if err1 == nil && err2 == nil && len(secret.Data["tls.crt"]) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("join applied no agent in remote2: %v, %v", err1, err2)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if img := dep.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/meshfleet/meshfleet:v9" || *dep.Spec.Replicas != 2 {
			t.Errorf("applied agent Deployment: image %s, %d replicas; want --agent-image and 2", img, *dep.Spec.Replicas)
		}
		checkAgentCert(t, secret, tunnelCA, "remote2")
		runAgentWithID(t, ctx, "remote2", "applied-agent", secret, "https://"+agentServer, env.Cluster("remote2").Config)
		res := <-done
		if res.code != 0 || !strings.Contains(res.out, "joined the mesh through the tunnel") {
			t.Fatalf("join --remote-kubeconfig: exit %d:\n%s", res.code, res.out)
		}
		if !slices.ContainsFunc(tun.Agents("remote2"), func(a tunnel.AgentInfo) bool { return a.ID == "applied-agent" }) {
			t.Errorf("the agent run from the applied Secret is not connected: %+v", tun.Agents("remote2"))
		}
		c.ok("cluster", "leave", "remote2", k)
	})
	t.Run("join through the tunnel prints the agent manifest", func(t *testing.T) {
		out := c.ok("cluster", "join", "private", k, "--tunnel", "--tunnel-server", "tunnel.example.com:443")
		for _, want := range []string{"name: meshfleet-tunnel-agent-tls", "--cluster=private", "--server=https://tunnel.example.com:443", "tls.crt:"} {
			if !strings.Contains(out, want) {
				t.Errorf("agent manifest lacks %q", want)
			}
		}
		list := c.ok("cluster", "list", k, "-o", "yaml")
		if !strings.Contains(list, "name: private") {
			t.Errorf("cluster list lacks the tunnelled cluster:\n%s", list)
		}
		// Its agent never connected: leaving waits for a clean-up that cannot
		// happen, and says how to give up on it.
		out, code := c.run("cluster", "leave", "private", k, "--timeout", "3s")
		if code != 3 || !strings.Contains(out, "--force") {
			t.Errorf("leave of an unreachable cluster: exit %d:\n%s", code, out)
		}
		c.ok("cluster", "leave", "private", k, "--force")
	})
	t.Run("bad input gets a clear error and a non-zero exit", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			code int
			want string
		}{
			{"missing kubeconfig", []string{"status", "--kubeconfig", "/no/such/file"}, 2, "pass --kubeconfig"},
			{"bad output format", []string{"status", k, "-o", "xml"}, 2, "use table, json or yaml"},
			{"join with neither mode", []string{"cluster", "join", "x", k}, 2, "either --remote-kubeconfig"},
			{"remote kubeconfig missing", []string{"cluster", "join", "x", k, "--remote-kubeconfig", "/no/such/file"}, 2, "--remote-kubeconfig"},
			{"unreachable cluster", []string{"cluster", "join", "x", k, "--remote-kubeconfig", c.kubeconfig("https://127.0.0.1:1", nil)}, 4, "hint: check that the API server is up"},
			{"kubeconfig that runs a plugin", []string{"cluster", "join", "x", k, "--remote-kubeconfig", c.kubeconfig("https://127.0.0.1:1",
				&clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: "gke-gcloud-auth-plugin"}})}, 2, "users[u].user.exec: Forbidden"},
			{"missing permission", []string{"cluster", "join", "x", k, "--remote-kubeconfig", c.userKubeconfig("remote1", "nobody")}, 4, "hint: run as a cluster administrator"},
			{"leave an unknown cluster", []string{"cluster", "leave", "nope", k}, 1, "no cluster nope in the mesh"},
			{"print and apply the agent at once", []string{"cluster", "join", "x", k, "--tunnel", "--print", "--remote-kubeconfig", env.Cluster("remote1").Kubeconfig}, 2, "give one of them"},
			{"print without the tunnel", []string{"cluster", "join", "x", k, "--print", "--remote-kubeconfig", env.Cluster("remote1").Kubeconfig}, 2, "add --tunnel"},
			{"invalid install flags", []string{"install", "--dry-run", "--mode", "mesh"}, 2, "spec.multiCluster.mode"},
		}
		for _, tc := range cases {
			out, code := c.run(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("%s: exit %d (want %d), output does not say %q:\n%s", tc.name, code, tc.code, tc.want, out)
			}
		}
	})
	t.Run("leave and uninstall", func(t *testing.T) {
		loc.stop()
		c.ok("cluster", "leave", "remote1", k)
		out := c.ok("cluster", "list", k)
		if strings.Contains(out, "remote1") {
			t.Errorf("remote1 still listed:\n%s", out)
		}
		c.ok("uninstall", k, "--timeout", "2m")
		out, _ = c.run("status", k)
		if strings.Contains(out, "primary ") && strings.Contains(out, "Ready") {
			t.Errorf("control plane still there after uninstall:\n%s", out)
		}
	})
}

// kubeconfig writes a kubeconfig for server to a file.
func (c *cli) kubeconfig(server string, auth *clientcmdapi.AuthInfo) string {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.env.Cluster("primary").CACertPEM}
	if auth == nil {
		auth = &clientcmdapi.AuthInfo{Token: "t"}
	}
	kc.AuthInfos["u"] = auth
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	p := filepath.Join(c.t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// userKubeconfig is a kubeconfig of cluster for a user without rights.
func (c *cli) userKubeconfig(cluster, user string) string {
	cfg, err := c.env.Cluster(cluster).UserConfig(user)
	if err != nil {
		c.t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	p := filepath.Join(c.t.TempDir(), "kubeconfig-"+user)
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func lineOf(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

// agentSecret finds the agent's certificate Secret in join's output.
func agentSecret(t *testing.T, out string) *corev1.Secret {
	t.Helper()
	for _, doc := range strings.Split(out, "\n---\n") {
		s := &corev1.Secret{}
		if err := yaml.Unmarshal([]byte(doc), s); err == nil && s.Kind == "Secret" && s.Name == "meshfleet-tunnel-agent-tls" {
			return s
		}
	}
	t.Fatalf("no agent Secret in the join output:\n%s", out)
	return nil
}

// runAgent runs the tunnel agent of cluster with the certificate join issued,
// after creating the manifest's RBAC with the cluster's admin credentials;
// it forwards with the agent service account's token.
func runAgent(t *testing.T, ctx context.Context, cluster string, s *corev1.Secret, server string, admin *rest.Config) {
	t.Helper()
	runAgentWithID(t, ctx, cluster, "", s, server, admin)
}

// runAgentWithID runs an agent of cluster with the certificate in s, under
// id (the host name and a random suffix if empty).
func runAgentWithID(t *testing.T, ctx context.Context, cluster, id string, s *corev1.Secret, server string, admin *rest.Config) {
	t.Helper()
	cert, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatalf("agent certificate from join: %v", err)
	}
	roots, err := tunnel.CABundleFromPEM(s.Data["ca.crt"])
	if err != nil {
		t.Fatalf("server CA from join: %v", err)
	}
	upstream, err := tunnel.InstallAgentRBAC(ctx, admin, 3600)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: cluster, ID: id, Servers: []string{server}, Certificate: tunnel.StaticKeyPair(cert), ServerCAs: roots,
		Upstream: upstream, BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Run(ctx) }()
}

// joinerKubeconfig is a kubeconfig of the primary for user, who may create
// and read RemoteIstios in istio-system and read the agent certificate
// Secret of cluster: what `meshctl cluster join --tunnel` needs.
func (c *cli) joinerKubeconfig(pc client.Client, user, cluster string) string {
	c.t.Helper()
	for _, o := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "join", Namespace: "istio-system"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"meshfleet.io"}, Resources: []string{"remoteistios"}, Verbs: []string{"create", "get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "join", Namespace: "istio-system"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "join"},
			Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "join-" + cluster, Namespace: meshca.Namespace}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{meshca.AgentSecretName(cluster)}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "join-" + cluster, Namespace: meshca.Namespace},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "join-" + cluster},
			Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}}},
	} {
		if err := pc.Create(c.ctx, o); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.userKubeconfig("primary", user)
}

// checkAgentCert: the printed agent certificate is the operator's, from
// the tunnel CA, for cluster, short-lived; ca.crt is the tunnel CA.
func checkAgentCert(t *testing.T, s *corev1.Secret, tunnelCA *ca.KeyPair, cluster string) {
	t.Helper()
	if string(s.Data["ca.crt"]) != string(tunnelCA.CertPEM) {
		t.Errorf("the agent's ca.crt is not the tunnel CA")
	}
	pair, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tunnelCA.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("agent certificate does not chain to the tunnel CA: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tunnel.AgentIdentityURI(cluster).String() {
		t.Errorf("agent certificate URIs %v, want %s", leaf.URIs, tunnel.AgentIdentityURI(cluster))
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > meshca.AgentCertTTL+2*time.Minute {
		t.Errorf("agent certificate lives %v, want at most %v", life, meshca.AgentCertTTL)
	}
}

// startTunnel runs a tunnel server authenticating callers by client
// certificates of the primary's CA (the operator's).
func startTunnel(t *testing.T, tunnelCA *ca.KeyPair, primary *localcluster.Cluster) *tunnel.Local {
	t.Helper()
	l, err := tunnel.StartLocal(tunnel.LocalOptions{Root: tunnelCA, ClientCAPEM: primary.CACertPEM, Primary: primary.Config})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	return l
}

// locality is an in-process locality server writing into the primary.
type locality struct {
	srv        *pipeline.Server
	memberDown atomic.Bool // a member "remote-x" that has not synced
	stop       context.CancelFunc
}

// startLocality runs the locality server's writer on the primary with the
// Lease the rendered Deployment gives it and identity as its pod name, until stop or the
// end of the test; stop waits until it has released the Lease.
func startLocality(t *testing.T, ctx context.Context, primary *rest.Config, identity string) *locality {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := &locality{}
	srv, err := pipeline.New(pipeline.Options{Clusters: map[string]*rest.Config{"primary": primary}, Logger: quiet, Registerer: prometheus.NewRegistry(),
		AdjustMembers: func(m map[string]bool) map[string]bool {
			if l.memberDown.Load() {
				m["remote-x"] = false
			}
			return m
		},
		Lease: &rulesync.Lease{Namespace: "istio-system", Name: "meshfleet-locality", Identity: identity}})
	if err != nil {
		t.Fatal(err)
	}
	l.srv = srv
	done := make(chan struct{})
	go func() { _ = l.srv.Run(ctx); close(done) }()
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(l.stop)
	return l
}

// statusUntil runs meshctl status until it exits with code and its output
// contains want (at most a minute), and returns the output.
func (c *cli) statusUntil(t *testing.T, code int, want string) string {
	t.Helper()
	var out string
	var got int
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if out, got = c.run("status", "--kubeconfig="+c.primary); got == code && strings.Contains(out, want) {
			return out
		}
	}
	t.Fatalf("meshctl status: exit %d (want %d), output does not say %q:\n%s", got, code, want, out)
	return ""
}
