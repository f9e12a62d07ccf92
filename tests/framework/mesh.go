package framework

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/localmesh"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework/fakerollout"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// Names every mesh of the framework uses.
const (
	// Primary is the primary cluster's name (and istiod's cluster ID).
	Primary = "primary"
	// Namespace is the control plane's namespace.
	Namespace = "istio-system"
)

// Connection is how the operator and istiod reach the remote clusters.
type Connection string

const (
	// Direct: through a kubeconfig Secret of each remote in the primary.
	Direct Connection = "direct"
	// Tunnel: through the tunnel server, to which an agent in each remote
	// dials out; no credential of a remote is stored in the primary.
	Tunnel Connection = "tunnel"
)

// Connections are every connection mode, for tests run once per mode.
var Connections = []Connection{Direct, Tunnel}

// MeshOptions configure StartMesh.
type MeshOptions struct {
	// Remotes are the remote clusters' names.
	Remotes []string
	// Connection is how remotes are reached; Direct if empty.
	Connection Connection
	// Spec is the Istio resource istio-system/istio; ClusterName defaults
	// to Primary.
	Spec v1beta1.IstioSpec
	// Istiod starts the real istiod, out of cluster, with the MeshConfig the
	// operator rendered, once the control plane is deployed.
	Istiod bool
	// Operator are the operator's options; MetricsAddr and HealthAddr
	// default to "0", RemoteResync to 2 s, and Tunnel is set in Tunnel mode.
	Operator operator.Options
	// PilotAddress is what the RemoteIstios tell remote proxies to dial.
	PilotAddress string
}

// Clusters are real API servers sharing one etcd, with clients.
type Clusters struct {
	Env *testenv.Env
	// C are controller-runtime clients with the operator's scheme.
	C map[string]client.Client
	// Kube are client-go clientsets.
	Kube map[string]kubernetes.Interface
}

// StartClusters starts one cluster per option with clients, and creates the
// default ServiceAccount in each cluster's default namespace (no
// kube-controller-manager runs to create it).
func StartClusters(t testing.TB, opts ...localcluster.ClusterOptions) *Clusters {
	t.Helper()
	start := time.Now()
	env := testenv.Start(t, opts...)
	t.Logf("%d API servers up in %v", len(env.Clusters), time.Since(start).Round(time.Millisecond))
	cs := &Clusters{Env: env, C: map[string]client.Client{}, Kube: map[string]kubernetes.Interface{}}
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range env.Clusters {
		if cs.C[name], err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
		if cs.Kube[name], err = kubernetes.NewForConfig(c.Config); err != nil {
			t.Fatal(err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
		if _, err := cs.Kube[name].CoreV1().ServiceAccounts("default").Create(t.Context(), sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating ServiceAccount default/default in %s: %v", name, err)
		}
	}
	return cs
}

// Mesh is a primary and its remotes, the operator running in the test
// process against the primary, and (with MeshOptions.Istiod) istiod.
type Mesh struct {
	*Clusters
	Options  MeshOptions
	Operator *Operator
	// Istiod is nil unless MeshOptions.Istiod.
	Istiod *localistiod.Istiod
	// Tunnel is nil unless the connection is Tunnel.
	Tunnel *MeshTunnel
}

// MeshTunnel is the in-process tunnel server of a Tunnel mesh and its
// agents, one per remote.
type MeshTunnel struct {
	*localmesh.LocalTunnel
}

// StartMesh brings the mesh up with internal/localmesh (the sandbox's
// bring-up) on clusters of StartClusters: it applies meshfleet's CRDs,
// starts (in Tunnel mode) the tunnel server and one agent per remote,
// starts the operator, creates the Istio resource and waits until the
// operator deployed the control plane; then, with Istiod, starts istiod
// with the MeshConfig from the rendered ConfigMap istio-system/istio.
// Remotes join when the test calls Join. Everything stops when the test
// ends, after the test's own cleanups; the logs' last lines are shown if
// it failed.
func StartMesh(t testing.TB, opts MeshOptions) *Mesh {
	t.Helper()
	if opts.Connection == "" {
		opts.Connection = Direct
	}
	if opts.Spec.ClusterName == "" {
		opts.Spec.ClusterName = Primary
	}
	cos := []localcluster.ClusterOptions{{Name: Primary}}
	for _, r := range opts.Remotes {
		cos = append(cos, localcluster.ClusterOptions{Name: r})
	}
	m := &Mesh{Clusters: StartClusters(t, cos...), Options: opts}
	clusters := []*localcluster.Cluster{m.Env.Cluster(Primary)}
	for _, r := range opts.Remotes {
		clusters = append(clusters, m.Env.Cluster(r))
	}
	o := opts.Operator
	if o.MetricsAddr == "" {
		o.MetricsAddr = "0"
	}
	if o.HealthAddr == "" {
		o.HealthAddr = "0"
	}
	if o.RemoteResync == 0 {
		o.RemoteResync = 2 * time.Second
	}
	discardGlobalLog()
	start := time.Now()
	lm, err := localmesh.Start(t.Context(), localmesh.Options{
		Dir:         m.Env.Dir,
		Clusters:    clusters,
		Istio:       &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: Namespace}, Spec: opts.Spec},
		WaitFor:     v1beta1.ConditionControlPlaneDeployed,
		WaitTimeout: 90 * time.Second,
		Connection:  localmesh.Connection(opts.Connection),
		Operator:    o,
		RemoteIstio: remoteIstioSpec(opts.PilotAddress),
		Istiod:      opts.Istiod,
		Progress:    logWriter{t},
	})
	if lm != nil {
		t.Cleanup(func() {
			if err := lm.Stop(); err != nil {
				t.Errorf("stopping the mesh: %v", err)
			}
			if !t.Failed() {
				return
			}
			if lm.Operator != nil {
				operatorLogTail(t, lm.Operator)
			}
			if lm.Tunnel != nil {
				t.Logf("last lines of the tunnel log %s:\n%s", lm.Tunnel.LogPath, localproc.TailFile(lm.Tunnel.LogPath, 30))
			}
			if lm.Istiod != nil {
				t.Logf("last lines of %s:\n%s", lm.Istiod.LogPath, localproc.TailFile(lm.Istiod.LogPath, 80))
			}
		})
	}
	if err != nil {
		t.Fatalf("starting the mesh: %v", err)
	}
	t.Logf("mesh up (operator deployed the control plane%s) in %v", map[bool]string{true: ", istiod serving", false: ""}[opts.Istiod], time.Since(start).Round(time.Millisecond))
	m.Operator = &Operator{Manager: lm.Operator.Manager(), LogPath: lm.Operator.LogPath, stop: func() { _ = lm.Operator.Stop() }}
	if lm.Tunnel != nil {
		m.Tunnel = &MeshTunnel{lm.Tunnel}
		t.Logf("tunnel server: API %s, agents %s, log %s", lm.Tunnel.APIURL, lm.Tunnel.AgentURL, lm.Tunnel.LogPath)
	}
	if lm.IstiodNote != "" {
		t.Logf("NOTE: %s; the test sets it", lm.IstiodNote)
	}
	if lm.Istiod != nil {
		m.Istiod = lm.Istiod
		cm, err := m.Kube[Primary].CoreV1().ConfigMaps(Namespace).Get(t.Context(), "istio", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading the rendered ConfigMap %s/istio: %v", Namespace, err)
		}
		t.Logf("istiod: xDS on %s, log %s; rendered MeshConfig:\n%s\nrendered meshNetworks:\n%s", lm.Istiod.GRPCAddr, lm.Istiod.LogPath, cm.Data["mesh"], cm.Data["meshNetworks"])
	}
	return m
}

// remoteIstioSpec is the spec of the RemoteIstios the framework creates.
func remoteIstioSpec(pilotAddress string) v1beta1.RemoteIstioSpec {
	return v1beta1.RemoteIstioSpec{
		PilotAddress: pilotAddress,
		// Where the remote's workloads run; the operator labels it for injection.
		AutoInjectionNamespaces: []string{"default"},
	}
}

// logWriter writes each line to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// StopAgent stops the tunnel agent of remote.
func (m *Mesh) StopAgent(remote string) { m.Tunnel.StopAgent(remote) }

// KubeconfigSecret stores the admin kubeconfig of remote in the primary as
// <remote>-kubeconfig, for a RemoteIstio's kubeconfigSecretRef.
func (m *Mesh) KubeconfigSecret(t testing.TB, remote string) string {
	t.Helper()
	name, err := localmesh.KubeconfigSecret(t.Context(), m.C[Primary], Namespace, m.Env.Cluster(remote))
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// CreateRemoteIstio creates the RemoteIstio of remote on network (may be
// empty): in Direct mode with the kubeconfigSecretRef <remote>-kubeconfig
// (see KubeconfigSecret); in Tunnel mode without, and it waits until the
// tunnel server has accepted the remote's agent.
func (m *Mesh) CreateRemoteIstio(t testing.TB, remote, network string) {
	t.Helper()
	ri := &v1beta1.RemoteIstio{
		ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: Namespace},
		Spec:       remoteIstioSpec(m.Options.PilotAddress),
	}
	ri.Spec.Network = network
	if m.Tunnel == nil {
		ri.Spec.KubeconfigSecretRef = &corev1.LocalObjectReference{Name: remote + "-kubeconfig"}
	}
	if err := m.C[Primary].Create(t.Context(), ri); err != nil {
		t.Fatalf("creating RemoteIstio %s: %v", remote, err)
	}
	if m.Tunnel != nil {
		testenv.Eventually(t, 15*time.Second, "tunnel agent of "+remote+" connected", func() error {
			if len(m.Tunnel.Agents(remote)) == 0 {
				return fmt.Errorf("no agent of %s at the tunnel server", remote)
			}
			return nil
		})
	}
}

// Join joins remote on network as the connection mode does: in Direct mode
// it stores the remote's kubeconfig Secret first.
func (m *Mesh) Join(t testing.TB, remote, network string) {
	t.Helper()
	if m.Tunnel == nil {
		m.KubeconfigSecret(t, remote)
	}
	m.CreateRemoteIstio(t, remote, network)
}

// RemoteIstio reads the RemoteIstio of remote.
func (m *Mesh) RemoteIstio(t testing.TB, remote string) *v1beta1.RemoteIstio {
	t.Helper()
	ri := &v1beta1.RemoteIstio{}
	if err := m.C[Primary].Get(t.Context(), client.ObjectKey{Namespace: Namespace, Name: remote}, ri); err != nil {
		t.Fatal(err)
	}
	return ri
}

// WaitRemote waits until the RemoteIstio of remote has cond True.
func (m *Mesh) WaitRemote(t testing.TB, remote, cond string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, fmt.Sprintf("RemoteIstio %s %s", remote, cond), func() error {
		ri := &v1beta1.RemoteIstio{}
		if err := m.C[Primary].Get(t.Context(), client.ObjectKey{Namespace: Namespace, Name: remote}, ri); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(ri.Status.Conditions, cond) {
			return fmt.Errorf("conditions: %s", FormatConditions(ri.Status.Conditions))
		}
		return nil
	})
}

// ExpectConnected waits until the RemoteIstio of remote has Connected=False
// with reason and a message containing msg, and returns the condition.
func (m *Mesh) ExpectConnected(t testing.TB, remote, reason, msg string, timeout time.Duration) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	testenv.Eventually(t, timeout, fmt.Sprintf("RemoteIstio %s Connected=False %s %q", remote, reason, msg), func() error {
		ri := &v1beta1.RemoteIstio{}
		if err := m.C[Primary].Get(t.Context(), client.ObjectKey{Namespace: Namespace, Name: remote}, ri); err != nil {
			return err
		}
		c := meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("conditions: %s", FormatConditions(ri.Status.Conditions))
		}
		got = *c
		return nil
	})
	return got
}

// Leave deletes the RemoteIstio of remote, waits until it is gone, and
// checks its remote secret went with it.
func (m *Mesh) Leave(t testing.TB, remote string) {
	t.Helper()
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: Namespace}}
	if err := m.C[Primary].Delete(t.Context(), ri); err != nil {
		t.Fatal(err)
	}
	m.WaitLeft(t, remote)
}

// WaitLeft waits until the RemoteIstio of remote is gone, and checks its
// remote secret went with it.
func (m *Mesh) WaitLeft(t testing.TB, remote string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, "RemoteIstio "+remote+" gone", func() error {
		err := m.C[Primary].Get(t.Context(), client.ObjectKey{Namespace: Namespace, Name: remote}, &v1beta1.RemoteIstio{})
		if err == nil {
			return fmt.Errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})
	if err := m.C[Primary].Get(t.Context(), client.ObjectKey{Namespace: Namespace, Name: render.RemoteSecretName(remote)}, &corev1.Secret{}); err == nil {
		t.Errorf("remote secret of %s still in the primary", remote)
	}
}

// RollOut reports every Deployment meshfleet rendered in cluster rolled
// out (fakerollout: the test chooses the instant) and returns how many.
func (m *Mesh) RollOut(t testing.TB, cluster string) int {
	t.Helper()
	n, err := fakerollout.RollOutAll(t.Context(), m.C[cluster], client.MatchingLabels{render.LabelManagedBy: render.ManagedByValue})
	if err != nil {
		t.Fatalf("in %s: %v", cluster, err)
	}
	return n
}

// WaitEndpoints polls istiod's EDS for cluster as node until the endpoints
// equal want, and returns how long it took.
func (m *Mesh) WaitEndpoints(t testing.TB, node XDSNode, cluster string, want []Endpoint, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	wantS := fmt.Sprint(want)
	var got []Endpoint
	testenv.Eventually(t, timeout, "istiod EDS "+wantS, func() error {
		var err error
		if got, err = Endpoints(t.Context(), m.Istiod.GRPCAddr, node, cluster); err != nil {
			return err
		}
		if fmt.Sprint(got) != wantS {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("istiod EDS for %s (client network %q): %v", cluster, node.Network, got)
	return took
}

// CheckSharedRoot verifies with crypto/x509 that the cacerts of the primary
// and of every remote are distinct intermediates, each issued for its
// cluster and chaining to the primary's root.
func (m *Mesh) CheckSharedRoot(t testing.TB) {
	t.Helper()
	ctx := t.Context()
	root := &corev1.Secret{}
	if err := m.C[Primary].Get(ctx, client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.RootSecretName}, root); err != nil {
		t.Fatalf("root CA Secret in the primary: %v", err)
	}
	rootCert := ParseCert(t, root.Data[meshca.RootCertKey])
	seen := map[string]bool{}
	clusters := append([]string{Primary}, m.Options.Remotes...)
	for _, c := range clusters {
		s := &corev1.Secret{}
		if err := m.C[c].Get(ctx, client.ObjectKey{Namespace: Namespace, Name: meshca.CACertsSecretName}, s); err != nil {
			t.Fatalf("cacerts in %s: %v", c, err)
		}
		inter := ParseCert(t, s.Data[ca.CACertKey])
		if err := ca.VerifyChain(inter, rootCert, time.Now()); err != nil {
			t.Errorf("cacerts of %s does not chain to the primary's root: %v", c, err)
		}
		if got := ParseCert(t, s.Data["root-cert.pem"]); !got.Equal(rootCert) {
			t.Errorf("root-cert.pem of %s is not the mesh root", c)
		}
		if got := ca.ClusterOf(inter); got != c {
			t.Errorf("cacerts of %s was issued for cluster %q", c, got)
		}
		seen[inter.SerialNumber.String()] = true
		t.Logf("%s: intermediate %q (serial %s) chains to root %q", c, inter.Subject, inter.SerialNumber, rootCert.Subject)
	}
	if len(seen) != len(clusters) {
		t.Errorf("clusters share intermediates: %d distinct of %d", len(seen), len(clusters))
	}
}

// WriteIstiodToken writes a token of the primary's istio-system/istiod
// service account for the tunnel's audience to file, as the kubelet
// projects it into istiod's pod (localmesh.WriteIstiodToken).
func (c *Clusters) WriteIstiodToken(t testing.TB, file string) {
	t.Helper()
	if err := localmesh.WriteIstiodToken(t.Context(), c.Kube[Primary], Namespace, file); err != nil {
		t.Fatal(err)
	}
}

// IstiodTunnelEnv is the extra environment of an out-of-cluster istiod:
// what the rendered istiod Deployment says about tokenFile in remote
// secrets (localmesh.IstiodTunnelEnv); the test says so if it had to set it.
func IstiodTunnelEnv(t testing.TB, c client.Client) []string {
	t.Helper()
	env, note, err := localmesh.IstiodTunnelEnv(t.Context(), c, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	if note != "" {
		t.Logf("NOTE: %s; the test sets it", note)
	} else {
		t.Logf("rendered istiod Deployment sets %s", env[0])
	}
	return env
}

// ProxiedBy counts the tunnel's audit lines ("proxied request") of user,
// authenticated by auth (x509 or token), per cluster and status code.
func (tn *MeshTunnel) ProxiedBy(t testing.TB, user, auth string) map[string]map[int]int {
	t.Helper()
	out := map[string]map[int]int{}
	f, err := os.Open(tn.LogPath)
	if err != nil {
		t.Fatal(err)
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

// FormatConditions prints conditions for a failure message.
func FormatConditions(cs []metav1.Condition) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "[%s=%s %s: %s] ", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

// ParseCert parses the first PEM certificate of b.
func ParseCert(t testing.TB, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM block in %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
