//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rtt"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
	"github.com/meshfleet/meshfleet/tests/framework"
)

// Addresses of TestLocalityRTTOrder (198.18.6.0/24: no other test binds
// there). The tunnel server and the locality server get addresses of their
// own, so their fixed ports cannot collide with anything.
const (
	rttXDSHost    = "198.18.6.10" // meshfleet xds (locality server): debug on :9092
	rttTunnelHost = "198.18.6.11" // meshfleet tunnel server: API :8443, agents :8444, metrics :9090
)

var rttClientAddr = netip.MustParseAddr("198.18.6.20") // the client's identity only

// rttOneWay is what the delayed agent's link adds in each direction: its
// RTT is over 100 ms against well under 1 ms for the other agent, far beyond
// the tracker's margin (10%, at least 1 ms) and a loaded machine's jitter.
const rttOneWay = 50 * time.Millisecond

// rttRemotes are the remote clusters, each reached through the tunnel.
var rttRemotes = []string{"remote2", "remote3"}

// rttWorkloads: one echo replica per cluster, each cluster in a region of
// its own. The client runs in the primary, in r1/z1.
var rttWorkloads = map[string]workload{
	mcPrimary: {name: "echo-r1", node: "node-r1-z1", region: "r1", zone: "z1", addr: netip.MustParseAddr("198.18.6.1")},
	"remote2": {name: "echo-r2", node: "node-r2-z2", region: "r2", zone: "z2", addr: netip.MustParseAddr("198.18.6.2")},
	"remote3": {name: "echo-r3", node: "node-r3-z3", region: "r3", zone: "z3", addr: netip.MustParseAddr("198.18.6.3")},
}

// rttColumns is the order the table prints the workloads in.
var rttColumns = []workload{rttWorkloads[mcPrimary], rttWorkloads["remote2"], rttWorkloads["remote3"]}

var rttPhases = []struct {
	name    string
	r1Ready bool
	// delayed is the remote whose agent's link is slow.
	delayed string
	// failoverTo is where the generated rule must send r1's traffic.
	failoverTo string
	// want is the cluster whose echo replica must answer ≥ 99% of the
	// client's RPCs.
	want string
	// priorities are istiod's EDS priorities for the client (checked when
	// r1 is ready; not-ready endpoints are not sent).
	priorities map[string]uint32
}{
	{"healthy", true, "remote2", "r3", mcPrimary, map[string]uint32{"r1/z1": 0, "r3/z3": 1, "r2/z2": 2}},
	{"r1 not ready", false, "remote2", "r3", "remote3", nil},
	{"delays swapped", false, "remote3", "r2", "remote2", nil},
	{"recovered", true, "remote3", "r2", mcPrimary, map[string]uint32{"r1/z1": 0, "r2/z2": 1, "r3/z3": 2}},
}

// TestLocalityRTTOrder shows that the failover order meshfleet's locality
// server generates follows the round-trip times the tunnel measures. Three
// real API servers (primary in r1, remote2 in r2, remote3 in r3), the real
// `meshfleet tunnel server` with one real `meshfleet tunnel agent` per
// remote, each dialling through a delayProxy, and the real `meshfleet xds`
// with --tunnel-metrics; istiod and the locality server both read the
// remotes through the tunnel. No failover order is configured, and the
// default order sends r1 to r2: the test delays remote2's link, so only the
// RTTs can make r1 fail over to r3. A proxyless gRPC client in r1/z1 must
// then see ≥ 99% of its RPCs at home, in r3 when r1 is not ready, in r2 once
// the delays are swapped, and at home after recovery.
func TestLocalityRTTOrder(t *testing.T) {
	began := time.Now()
	if got := locality.ComputeOrders([]string{"r1", "r2", "r3"}, nil, nil)["r1"]; len(got) == 0 || got[0].Region != "r2" {
		t.Fatalf("premise: the default order from r1 should start with r2 (the test delays r2 so that only RTTs can pick r3); got %v", got)
	}
	addrs := []netip.Addr{rttClientAddr, netip.MustParseAddr(rttXDSHost), netip.MustParseAddr(rttTunnelHost)}
	for _, w := range rttWorkloads {
		addrs = append(addrs, w.addr)
	}
	if err := netns.Setup(addrs...); err != nil {
		t.Fatal(err)
	}
	meshfleet := buildMeshfleet(t) // while the API servers start

	cs := framework.StartClusters(t,
		localcluster.ClusterOptions{Name: mcPrimary},
		localcluster.ClusterOptions{Name: "remote2"},
		localcluster.ClusterOptions{Name: "remote3"},
	)
	env := cs.Env
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	t.Cleanup(cancel)
	m := &mcMesh{t: t, ctx: ctx, env: env, c: cs.C, kube: cs.Kube}
	for name := range env.Clusters {
		w := rttWorkloads[name]
		createNodes(ctx, t, m.kube[name], []workload{w})
		createEchoService(ctx, t, m.kube[name], []workload{w})
		mustCreate(t, "endpointslice default/echo-1 in "+name, func() error {
			_, err := m.kube[name].DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice([]workload{w}, nil), metav1.CreateOptions{})
			return err
		})
		startEchoServer(t, w.addr, echoPort)
	}
	primary := env.Cluster(mcPrimary)
	if err := localistiod.InstallCRDs(ctx, primary.Config); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, "namespace istio-system", func() error {
		_, err := m.kube[mcPrimary].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mcNS}}, metav1.CreateOptions{})
		return err
	})
	t.Logf("3 API servers with the echo Service up after %v", time.Since(began).Round(time.Millisecond))

	// The tunnel: server, a delayProxy per remote, an agent behind each.
	bin, dir := meshfleet(), filepath.Join(env.Dir, "meshfleet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := ca.NewRoot(ca.RootOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	serving, err := tunnel.IssueServerCertificate(root, []string{rttTunnelHost, "127.0.0.1"}, tunnel.CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	rootFile := writeFile(t, dir, "root.crt", root.CertPEM)
	metricsURL := "http://" + rttTunnelHost + ":9090/metrics"
	server := runMeshfleet(t, bin, dir, "tunnel-server", "tunnel", "server",
		"--api-addr", rttTunnelHost+":8443", "--agent-addr", rttTunnelHost+":8444", "--metrics-addr", rttTunnelHost+":9090",
		"--tls-cert-file", writeFile(t, dir, "server.crt", serving.CertPEM), "--tls-key-file", writeFile(t, dir, "server.key", serving.KeyPEM),
		"--agent-ca-file", rootFile, "--client-ca-file", writeFile(t, dir, "client-ca.crt", primary.CACertPEM), "--token-review=false", "--ping-interval=1s",
		// No RemoteIstios here: the agents' clusters are listed, and the
		// callers (client certificates of istiod and the locality server)
		// are allowed by name.
		"--clusters", strings.Join(rttRemotes, ","), "--allow-user", "istiod", "--allow-user", "meshfleet-locality")
	waitGetOK(m, server, metricsURL)
	// In the remotes the callers act under their mapped names, which may read.
	for _, r := range rttRemotes {
		allowTunnelReaders(ctx, t, m.kube[r], mapping.DefaultPrefix+"istiod", mapping.DefaultPrefix+"meshfleet-locality")
	}
	proxies := map[string]*delayProxy{}
	for _, r := range rttRemotes {
		proxies[r] = startDelayProxy(t, rttTunnelHost+":8444")
	}
	setDelays(proxies, rttPhases[0].delayed)
	for _, r := range rttRemotes {
		leaf, err := tunnel.IssueAgentCertificate(root, r, tunnel.CertificateOptions{TTL: time.Hour, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		runMeshfleet(t, bin, dir, "tunnel-agent-"+r, "tunnel", "agent", "--cluster", r, "--id", "agent-"+r,
			"--server", "https://"+proxies[r].Addr(), "--server-ca-file", rootFile,
			"--tls-cert-file", writeFile(t, dir, r+".crt", leaf.CertPEM), "--tls-key-file", writeFile(t, dir, r+".key", leaf.KeyPEM),
			"--kubeconfig", env.Cluster(r).Kubeconfig, "--metrics-addr=")
	}
	rtts := waitRTTs(m, metricsURL, rttPhases[0].delayed)
	t.Logf("tunnel up after %v; RTTs on %s: %s", time.Since(began).Round(time.Millisecond), metricsURL, formatRTTs(rtts))

	// The locality server with static members, reading the remotes through
	// the tunnel as user meshfleet-locality.
	xdsArgs := []string{"xds", "--cluster", mcPrimary + "=" + primary.Kubeconfig}
	for _, r := range rttRemotes {
		kc := tunnelKubeconfig(t, primary, r, root.CertPEM, "meshfleet-locality")
		xdsArgs = append(xdsArgs, "--cluster", r+"="+writeFile(t, dir, r+".kubeconfig", kc))
	}
	xdsArgs = append(xdsArgs, "--primary-cluster", mcPrimary, "--tunnel-metrics", metricsURL, "--tunnel-metrics-interval", "500ms",
		"--debug-addr", rttXDSHost+":9092")
	localitySrv := runMeshfleet(t, bin, dir, "xds", xdsArgs...)
	waitGetOK(m, localitySrv, "http://"+rttXDSHost+":9092/healthz")
	debugURL := "http://" + rttXDSHost + ":9092/debug/locality?service=default/echo"
	t.Logf("meshfleet xds healthy after %v", time.Since(began).Round(time.Millisecond))

	// istiod: remote secrets through the tunnel (as user istiod); the
	// locality rules come through the primary's API server.
	for _, r := range rttRemotes {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: render.RemoteSecretName(r), Namespace: mcNS,
				Labels: map[string]string{render.LabelMultiCluster: "true"}, Annotations: map[string]string{render.AnnotationClusterName: r}},
			Data: map[string][]byte{r: tunnelKubeconfig(t, primary, r, root.CertPEM, "istiod")},
		}
		mustCreate(t, "remote secret of "+r, func() error {
			_, err := m.kube[mcPrimary].CoreV1().Secrets(mcNS).Create(ctx, s, metav1.CreateOptions{})
			return err
		})
	}
	istiod := startIstiod(ctx, t, localistiod.Options{
		Kubeconfig: primary.Kubeconfig, Dir: filepath.Join(env.Dir, "istiod"), ClusterID: mcPrimary,
		MeshConfig: "localityLbSetting:\n  enabled: true\n",
	})

	nodeID := "sidecar~" + rttClientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(istiod.GRPCAddr, nodeID, mcPrimary, "r1", "z1"))

	type result struct {
		rtts    map[string]time.Duration
		settled time.Duration
		got     map[string]int
	}
	var results []result
	r1Ready := true
	for _, p := range rttPhases {
		start := time.Now()
		setDelays(proxies, p.delayed)
		rtts := waitRTTs(m, metricsURL, p.delayed)
		if p.r1Ready != r1Ready {
			setReady(m, rttWorkloads[mcPrimary], p.r1Ready)
			r1Ready = p.r1Ready
		}
		waitFailover(m, debugURL, "r1", p.failoverTo)
		if p.priorities != nil {
			waitPriorities(ctx, t, istiod.GRPCAddr, nodeID, mcPrimary, p.priorities)
		}
		wantName, want := rttWorkloads[p.want].name, rttWorkloads[p.want].addr.String()
		waitAllOn(t, cc, want, 20, 60*time.Second)
		settled := time.Since(start)
		rule := waitFailover(m, debugURL, "r1", p.failoverTo) // again, now that readiness has reached it too
		got := callPeers(ctx, cc, rpcsPerPhase)
		t.Logf("%s (%s delayed; RTTs %s): rule %s; traffic on %s after %v; %s",
			p.name, p.delayed, formatRTTs(rtts), rule, wantName, settled.Round(time.Millisecond), sharesOf(got, rttColumns, 6))
		if float64(got[want]) < 0.99*rpcsPerPhase {
			t.Errorf("%s: %d/%d RPCs on %s, want ≥ 99%%", p.name, got[want], rpcsPerPhase, wantName)
		}
		results = append(results, result{rtts: rtts, settled: settled, got: got})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "share of %d RPCs from a client in r1/z1 (primary r1, remote2 r2, remote3 r3; no explicit order, default r1→r2; delay %v each way):\n", rpcsPerPhase, rttOneWay)
	fmt.Fprintf(&b, "%-15s %-8s %-12s %-12s %-9s %-8s %s\n", "phase", "delayed", "RTT remote2", "RTT remote3", "rule", "settled", "echo-r1 | echo-r2 | echo-r3 | errors")
	for i, p := range rttPhases {
		r := results[i]
		fmt.Fprintf(&b, "%-15s %-8s %-12v %-12v %-9s %-8v %s\n", p.name, p.delayed, r.rtts["remote2"].Round(10*time.Microsecond),
			r.rtts["remote3"].Round(10*time.Microsecond), "r1→"+p.failoverTo, r.settled.Round(10*time.Millisecond), sharesOf(r.got, rttColumns, 6))
	}
	t.Log("\n" + b.String())
	t.Logf("wall time %v", time.Since(began).Round(time.Millisecond))
}

// buildMeshfleet starts `go build ./cmd/meshfleet` and returns a function
// that waits for it and returns the binary.
func buildMeshfleet(t *testing.T) func() string {
	bin := filepath.Join(t.TempDir(), "meshfleet")
	done := make(chan error, 1)
	go func() {
		out, err := exec.Command("go", "build", "-o", bin, "github.com/meshfleet/meshfleet/cmd/meshfleet").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build ./cmd/meshfleet: %v\n%s", err, out)
		}
		done <- err
	}()
	wait := sync.OnceValue(func() error { return <-done })
	t.Cleanup(func() { _ = wait() }) // before the temporary directory goes
	return func() string {
		t.Helper()
		if err := wait(); err != nil {
			t.Fatal(err)
		}
		return bin
	}
}

// runMeshfleet runs `meshfleet args...` until the test ends, its output in
// dir/name.log (whose end is shown if the test failed).
func runMeshfleet(t *testing.T, bin, dir, name string, args ...string) *localproc.Process {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	p, err := localproc.Start(name, bin, args, nil, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(5 * time.Second); err != nil {
			t.Errorf("stopping %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", logPath, localproc.TailFile(logPath, 30))
		}
	})
	return p
}

// waitGetOK waits until GET url answers 200, failing at once if p exits.
func waitGetOK(m *mcMesh, p *localproc.Process, url string) {
	m.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	m.eventually(90*time.Second, "GET "+url, func() error {
		if exited, _ := p.Exited(); exited {
			m.t.Fatalf("the process serving %s %s", url, p.DescribeExit())
		}
		return localproc.GetOK(m.ctx, client, url)
	})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tunnelKubeconfig is a kubeconfig that reaches cluster through the tunnel
// server, as user (system:masters) with a client certificate of the
// primary's CA, which the tunnel server authenticates and impersonates.
func tunnelKubeconfig(t *testing.T, primary *localcluster.Cluster, cluster string, tunnelCA []byte, user string) []byte {
	t.Helper()
	cfg, err := primary.UserConfig(user, "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[cluster] = &clientcmdapi.Cluster{Server: "https://" + rttTunnelHost + ":8443" + tunnel.ClustersPathPrefix + cluster, CertificateAuthorityData: tunnelCA}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	kc.CurrentContext = cluster
	b, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatalf("kubeconfig of %s through the tunnel: %v", cluster, err)
	}
	return b
}

// allowTunnelReaders lets users (the names the tunnel impersonates callers
// as) read everything in a remote, as the operator's bindings would let
// istiod and the locality server read it.
func allowTunnelReaders(ctx context.Context, t *testing.T, kube kubernetes.Interface, users ...string) {
	t.Helper()
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "tunnel-readers"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tunnel-readers"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name}}
	for _, u := range users {
		crb.Subjects = append(crb.Subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: u})
	}
	mustCreate(t, "clusterrole tunnel-readers", func() error {
		_, err := kube.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, "clusterrolebinding tunnel-readers", func() error {
		_, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
		return err
	})
}

// setDelays delays the link of the delayed remote's agent by rttOneWay in
// each direction, and no other.
func setDelays(proxies map[string]*delayProxy, delayed string) {
	for r, p := range proxies {
		if r == delayed {
			p.SetDelay(rttOneWay)
		} else {
			p.SetDelay(0)
		}
	}
}

// waitRTTs waits until the tunnel server's /metrics, read as the locality
// server's poller reads them, show the delayed remote's agent at least two
// one-way delays away and every other one nearer than one, and returns them.
func waitRTTs(m *mcMesh, url, delayed string) map[string]time.Duration {
	m.t.Helper()
	var got map[string]time.Duration
	m.eventually(30*time.Second, fmt.Sprintf("RTTs with %s's agent delayed", delayed), func() error {
		s, err := (&rtt.Poller{URL: url}).Poll(m.ctx)
		if err != nil {
			return err
		}
		got = s.RTT
		for _, r := range rttRemotes {
			d, ok := got[r]
			switch {
			case !ok:
				return fmt.Errorf("no RTT measured to %s's agent yet (%s)", r, formatRTTs(got))
			case r == delayed && d < 2*rttOneWay:
				return fmt.Errorf("%s's agent not delayed yet (%s)", r, formatRTTs(got))
			case r != delayed && d >= rttOneWay:
				return fmt.Errorf("%s's agent still delayed (%s)", r, formatRTTs(got))
			}
		}
		return nil
	})
	return got
}

func formatRTTs(rtts map[string]time.Duration) string {
	var parts []string
	for _, r := range rttRemotes {
		if d, ok := rtts[r]; ok {
			parts = append(parts, fmt.Sprintf("%s %v", r, d.Round(10*time.Microsecond)))
		} else {
			parts = append(parts, r+" -")
		}
	}
	return strings.Join(parts, ", ")
}

// setReady marks w's endpoint (in the primary's echo EndpointSlice) ready
// or not.
func setReady(m *mcMesh, w workload, ready bool) {
	m.t.Helper()
	slices := m.kube[mcPrimary].DiscoveryV1().EndpointSlices("default")
	live, err := slices.Get(m.ctx, "echo-1", metav1.GetOptions{})
	if err != nil {
		m.t.Fatalf("reading EndpointSlice default/echo-1 in %s: %v", mcPrimary, err)
	}
	updated := echoSlice([]workload{w}, map[string]bool{w.name: !ready})
	updated.ResourceVersion = live.ResourceVersion
	if _, err := slices.Update(m.ctx, updated, metav1.UpdateOptions{}); err != nil {
		m.t.Fatalf("updating EndpointSlice default/echo-1 in %s: %v", mcPrimary, err)
	}
}

// waitFailover waits until the rule the locality server generated for the
// echo Service (its /debug/locality) fails region from over to to, and
// returns the rule's failover settings and the reason given for from.
func waitFailover(m *mcMesh, debugURL, from, to string) string {
	m.t.Helper()
	var desc string
	m.eventually(30*time.Second, fmt.Sprintf("a generated DestinationRule failing %s over to %s", from, to), func() error {
		req, err := http.NewRequestWithContext(m.ctx, http.MethodGet, debugURL, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s %v: %s", debugURL, resp.Status, err, body)
		}
		var st rulesync.DebugState
		if err := yaml.Unmarshal(body, &st); err != nil {
			return fmt.Errorf("decoding %s: %w", debugURL, err)
		}
		if len(st.Decisions) != 1 || st.Decisions[0].Rule == nil {
			return fmt.Errorf("no rule for default/echo: %s", body)
		}
		d := st.Decisions[0]
		lb := d.Rule.Spec.GetTrafficPolicy().GetLoadBalancer().GetLocalityLbSetting()
		var entries []string
		target := ""
		for _, f := range lb.GetFailover() {
			entries = append(entries, f.GetFrom()+"→"+f.GetTo())
			if f.GetFrom() == from {
				target = f.GetTo()
			}
		}
		why := ""
		for _, r := range d.Reasons {
			if strings.HasPrefix(r, "from "+from+":") {
				why = r
			}
		}
		desc = fmt.Sprintf("failover [%s] failoverPriority %v (%s)", strings.Join(entries, " "), lb.GetFailoverPriority(), why)
		if target != to {
			return fmt.Errorf("rule %s", desc)
		}
		return nil
	})
	return desc
}

// delayProxy is the test's network emulation (this machine has no tc
// netem): a TCP proxy on 127.0.0.1 to target that holds every chunk of
// bytes, in each direction, for the current one-way delay before passing
// it on, in order. A link through it has an RTT of about twice the delay;
// the delay may change while connections are open.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // nanoseconds, each way

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// startDelayProxy starts a proxy to target with no delay; the test's end
// closes it and every connection through it.
func startDelayProxy(t *testing.T, target string) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

// Addr is where to dial instead of target.
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

// SetDelay sets the one-way delay for bytes read from now on.
func (p *delayProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *delayProxy) serve() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() {
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				down.Close()
				return
			}
			if !p.track(down, up) {
				return
			}
			var wg sync.WaitGroup
			wg.Go(func() { p.pipe(up, down) })
			wg.Go(func() { p.pipe(down, up) })
			wg.Wait()
			p.untrack(down, up)
		})
	}
}

// pipe copies src to dst, writing each chunk read the current delay after
// it was read. When src ends, dst's write side is closed.
func (p *delayProxy) pipe(dst, src net.Conn) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 16<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(time.Duration(p.delay.Load()))}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			dst.Close()
			for range q { // until the reader sees its closed src
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		dst.Close()
	}
}

func (p *delayProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if p.closed {
			c.Close()
			continue
		}
		p.conns[c] = true
	}
	return !p.closed
}

func (p *delayProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
