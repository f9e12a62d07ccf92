//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// availOutage is how long the locality server stays down: longer than
// istiod's 60 s MCP reconnect backoff, which no longer applies (istiod has
// no connection to the server) — kept to show the rules outlive it.
const availOutage = 65 * time.Second

// availRemoteAddr is the address of the remote-only service's endpoint.
var availRemoteAddr = netip.MustParseAddr("198.18.7.1")

// TestLocalityServerAvailability is issue 12's check that istiod never
// depends on the locality server, against a real istiod, two real API
// servers and a real proxyless gRPC client in r1/z1:
//
//  1. istiod starts with the MeshConfig the operator renders for an Istio
//     resource with locality enabled and spec.localityLB.serverAddress set
//     (on main that meant configSources: xds://<address>), while nothing
//     answers there: istiod becomes ready and serves EDS.
//  2. The locality server comes up: its rules reach istiod (EDS priorities
//     and /debug/configz).
//  3. The server is killed for availOutage: the rules stay in the API
//     server and in istiod, traffic keeps its zone, and an istiod started
//     during the outage serves them too.
//  4. The server restarts with the remote cluster unreachable (its API
//     server stopped): no rule disappears or is rewritten, neither the
//     primary's nor the remote's; a new service still gets its rule.
func TestLocalityServerAvailability(t *testing.T) {
	if err := netns.Setup(availRemoteAddr); err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"}, localcluster.ClusterOptions{Name: "remote1"})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	primary, remote := env.Cluster("primary"), env.Cluster("remote1")
	if err := localistiod.InstallCRDs(ctx, primary.Config); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(primary.Config)
	rkube := kubernetes.NewForConfigOrDie(remote.Config)
	mustCreate(t, "namespace istio-system", func() error {
		_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{})
		return err
	})
	for _, k := range []kubernetes.Interface{kube, rkube} {
		mustCreate(t, "serviceaccount default/default", func() error {
			_, err := k.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			return err
		})
	}
	// The primary runs echo in r1/z1, r1/z2, r2/z3; the remote runs a
	// service of its own in r3/z4 (istiod does not know the remote; its
	// rule shows the remote's share of the rules).
	ws := localityWorkloads[:3]
	createNodes(ctx, t, kube, ws)
	createEchoService(ctx, t, kube, ws)
	mustCreate(t, "endpointslice default/echo-1", func() error {
		_, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice(ws, nil), metav1.CreateOptions{})
		return err
	})
	for _, w := range ws {
		startEchoServer(t, w.addr, echoPort)
	}
	far := []workload{{name: "far-1", node: "node-r3-z4", region: "r3", zone: "z4", addr: availRemoteAddr}}
	createNodes(ctx, t, rkube, far)
	createNamedService(ctx, t, rkube, "far", far)

	// 1. istiod starts while the locality server is down.
	portL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := portL.Addr().String()
	_ = portL.Close() // nothing answers there from now on
	mesh := operatorMeshConfig(t, deadAddr)
	t.Logf("MeshConfig rendered by the operator (serverAddress %s, nothing listening):\n%s", deadAddr, mesh)
	start := time.Now()
	d := startIstiod(ctx, t, localistiod.Options{Kubeconfig: primary.Kubeconfig, Dir: filepath.Join(env.Dir, "istiod"), ClusterID: "primary", MeshConfig: mesh})
	t.Logf("1. istiod ready with the locality server down: %v", time.Since(start).Round(time.Millisecond))
	nodeID := "sidecar~" + clientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(d.GRPCAddr, nodeID, "primary", "r1", "z1"))
	testenv.Eventually(t, 60*time.Second, "EDS served: RPCs answered in every zone (no locality rule yet)", func() error {
		got := callPeers(ctx, cc, 30)
		for _, w := range ws {
			if got[w.addr.String()] == 0 {
				return fmt.Errorf("30 RPCs: %v", got)
			}
		}
		return nil
	})

	// 2. The locality server comes up; its rules arrive.
	clusters := map[string]*rest.Config{"primary": primary.Config, "remote1": remote.Config}
	srv := startLocalityServer(t, localityServerOptions{primaryCluster: "primary", clusters: clusters})
	wantRules := []string{locality.RuleName("default", "echo"), locality.RuleName("default", "far")}
	drs := dynamic.NewForConfigOrDie(primary.Config).Resource(rulesync.GVR).Namespace("istio-system")
	waitGeneratedRules(t, drs, wantRules...)
	want := map[string]uint32{"r1/z1": 0, "r1/z2": 1, "r2/z3": 2}
	waitPriorities(ctx, t, d.GRPCAddr, nodeID, "primary", want)
	waitConfigz(t, d, wantRules...)
	before := ruleVersions(ctx, t, drs)
	waitAllOn(t, cc, echoAddrs[0].String(), 20, 60*time.Second)
	t.Logf("2. rules written and served by istiod: %v", before)

	// 3. The server is killed for longer than istiod's MCP backoff.
	srv.Stop()
	outage := time.Now()
	var inZone, total int
	for time.Since(outage) < availOutage {
		got := callPeers(ctx, cc, 50)
		for _, n := range got {
			total += n
		}
		inZone += got[echoAddrs[0].String()]
		time.Sleep(time.Second)
	}
	if after := ruleVersions(ctx, t, drs); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("3. rules changed while the server was down: %v, before %v", after, before)
	}
	waitPriorities(ctx, t, d.GRPCAddr, nodeID, "primary", want)
	waitConfigz(t, d, wantRules...)
	t.Logf("3. server down %v: %d/%d RPCs in r1/z1 (%.2f%%), rules and priorities unchanged", availOutage, inZone, total, 100*float64(inZone)/float64(max(total, 1)))
	if float64(inZone) < 0.99*float64(total) || total == 0 {
		t.Errorf("3. %d/%d RPCs stayed in r1/z1 during the outage, want ≥ 99%%", inZone, total)
	}
	// A new istiod (an eviction, a rollout) during the outage starts and
	// serves the rules.
	start = time.Now()
	d2 := startIstiod(ctx, t, localistiod.Options{Kubeconfig: primary.Kubeconfig, Dir: filepath.Join(env.Dir, "istiod-2"), ClusterID: "primary", MeshConfig: mesh})
	waitPriorities(ctx, t, d2.GRPCAddr, nodeID, "primary", want)
	t.Logf("3. a second istiod started during the outage: ready and serving the rules' priorities after %v", time.Since(start).Round(time.Millisecond))

	// 4. The server restarts with the remote unreachable.
	if err := remote.Stop(); err != nil {
		t.Logf("stopping remote1's API server: %v", err)
	}
	srv = startLocalityServer(t, localityServerOptions{primaryCluster: "primary", clusters: clusters})
	testenv.Eventually(t, 60*time.Second, "the restarted server synced the primary, not the remote", func() error {
		st := srv.State()
		if fmt.Sprint(st.Members) != "[{primary true} {remote1 false}]" || st.Rules != len(wantRules) {
			return fmt.Errorf("members %v, rules %d", st.Members, st.Rules)
		}
		return nil
	})
	// A new service in the reachable primary still gets its rule.
	createNamedService(ctx, t, kube, "late", []workload{ws[0], ws[2]})
	waitGeneratedRules(t, drs, append(wantRules, locality.RuleName("default", "late"))...)
	st := srv.State()
	after := ruleVersions(ctx, t, drs)
	for name, rv := range before {
		if after[name] != rv {
			t.Errorf("4. rule %s changed or disappeared with remote1 unreachable: resourceVersion %q, was %q", name, after[name], rv)
		}
	}
	if !strings.Contains(st.HeldReason, "remote1") || len(st.Held) == 0 {
		t.Errorf("4. held %v (%q): want the remote's rule held because remote1 has not synced", st.Held, st.HeldReason)
	}
	waitPriorities(ctx, t, d.GRPCAddr, nodeID, "primary", want)
	waitConfigz(t, d, wantRules...)
	t.Logf("4. restarted with remote1 unreachable: members %v, held %v (%s); every rule kept, late's rule created", st.Members, st.Held, st.HeldReason)
}

// operatorMeshConfig is the MeshConfig the operator renders for an Istio
// resource with locality enabled and spec.localityLB.serverAddress set.
func operatorMeshConfig(t *testing.T, serverAddress string) string {
	t.Helper()
	cp, errs := render.FromIstio(&v1beta1.Istio{
		ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Spec: v1beta1.IstioSpec{Version: "1.30.3", ClusterName: "primary",
			LocalityLB: v1beta1.LocalityLBSpec{Enabled: true, ServerAddress: serverAddress}},
	})
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	raw, err := protojson.Marshal(render.MeshConfig(cp))
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(raw)
	if err != nil {
		t.Fatal(err)
	}
	return string(y)
}

// createNamedService creates Service name with one ready endpoint per workload.
func createNamedService(ctx context.Context, t *testing.T, kube kubernetes.Interface, name string, ws []workload) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: echoPort}}}}
	mustCreate(t, "service default/"+name, func() error {
		_, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		return err
	})
	es := echoSlice(ws, nil)
	es.Name, es.Labels["kubernetes.io/service-name"] = name+"-1", name
	for i := range es.Endpoints {
		es.Endpoints[i].TargetRef = nil
	}
	mustCreate(t, "endpointslice default/"+name+"-1", func() error {
		_, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{})
		return err
	})
}

// waitGeneratedRules waits until the generated rules in istio-system are
// exactly names (in order).
func waitGeneratedRules(t *testing.T, drs dynamic.ResourceInterface, names ...string) {
	t.Helper()
	want := strings.Join(names, " ")
	testenv.Eventually(t, 60*time.Second, "generated rules "+want, func() error {
		list, err := drs.List(t.Context(), metav1.ListOptions{LabelSelector: locality.LabelManagedBy + "=" + locality.ManagedBy})
		if err != nil {
			return err
		}
		var got []string
		for _, u := range list.Items {
			got = append(got, u.GetName())
		}
		if strings.Join(got, " ") != want {
			return fmt.Errorf("rules %v", got)
		}
		return nil
	})
}

// ruleVersions maps each generated rule to its resourceVersion.
func ruleVersions(ctx context.Context, t *testing.T, drs dynamic.ResourceInterface) map[string]string {
	t.Helper()
	list, err := drs.List(ctx, metav1.ListOptions{LabelSelector: locality.LabelManagedBy + "=" + locality.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, u := range list.Items {
		out[u.GetName()] = u.GetResourceVersion()
	}
	return out
}

// waitConfigz waits until istiod's /debug/configz lists every named
// DestinationRule (istiod holds it in its config store).
func waitConfigz(t *testing.T, d *localistiod.Istiod, names ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "istiod's /debug/configz lists the generated rules", func() error {
		resp, err := http.Get("http://" + d.HTTPAddr + "/debug/configz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		var missing []string
		for _, n := range names {
			if !strings.Contains(string(body), `"`+n+`"`) {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: missing %v (%d bytes)", resp.Status, missing, len(body))
		}
		return nil
	})
}
