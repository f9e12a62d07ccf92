//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ingress"
	"github.com/meshfleet/meshfleet/pkg/operator/meshingress"
	"github.com/meshfleet/meshfleet/pkg/render"
)

const ldsType = "type.googleapis.com/envoy.config.listener.v3.Listener"

// ingWorkloads: one echo replica per cluster, three clusters in two regions.
// (node-r1-z1 in remote1 and node-r2-z2 in remote2 exist: startMesh made them.)
var ingWorkloads = map[string]workload{
	"primary": {name: "echo-primary", node: "node-p-r1-z1", region: "r1", zone: "z1", addr: netip.MustParseAddr("198.18.6.1")},
	"remote1": {name: "echo-remote1", node: "node-r1-z2", region: "r1", zone: "z2", addr: netip.MustParseAddr("198.18.6.2")},
	"remote2": {name: "echo-remote2", node: "node-r2-z2", region: "r2", zone: "z2", addr: netip.MustParseAddr("198.18.6.3")},
}

// ingCluster names the cluster of a locality "region/zone" (one per cluster here).
func ingCluster(loc string) string {
	for c, w := range ingWorkloads {
		if w.region+"/"+w.zone == loc {
			return c
		}
	}
	return "?" + loc
}

// TestMeshIngress creates a MeshIngress (entry through the ingress gateways
// of primary, r1, and remote2, r2; 80% to primary, 20% to remote1; header x-cluster: remote2 pins
// remote2); the operator renders and applies it, and the test reads what the
// real istiod serves a gateway (a router~ node in istio-gateways, r1/z1,
// cluster primary): LDS and RDS carry the header route and the weights, EDS
// of each cluster subset puts that cluster at priority 0 and the others
// after it by locality. Marking the primary's endpoint not ready moves
// priority 0 of the primary subset to remote1 (same region), restoring
// moves it back; both times are measured and printed.
func TestMeshIngress(t *testing.T) {
	var addrs []netip.Addr
	for _, w := range ingWorkloads {
		addrs = append(addrs, w.addr)
	}
	if err := netns.Setup(addrs...); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary,
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
	})
	// Built after startMesh, which sets controller-runtime's logger (it
	// complains when none is set 30 s after start).
	meshctlBin := ingMeshctl(t)
	ctx, cancel := context.WithTimeout(m.ctx, 6*time.Minute)
	defer cancel()
	for _, c := range []string{mcPrimary, "remote1", "remote2"} {
		w := ingWorkloads[c]
		if c != "remote2" {
			createNodes(ctx, t, m.kube[c], []workload{w})
		}
		createEchoService(ctx, t, m.kube[c], []workload{w})
		mustCreate(t, "endpointslice default/echo-1 in "+c, func() error {
			_, err := m.kube[c].DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice([]workload{w}, nil), metav1.CreateOptions{})
			return err
		})
		if c != mcPrimary {
			m.kubeconfigSecret(c)
			m.createRemoteIstio(c, "")
		}
	}

	mi := &v1beta1.MeshIngress{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: mcNS}, Spec: v1beta1.MeshIngressSpec{
		Hosts:           []string{"shop.example.com"},
		GatewayClusters: []string{mcPrimary, "remote2"},
		Routes: []v1beta1.IngressRoute{{
			Name:         "shop",
			Service:      v1beta1.IngressService{Name: echoService, Namespace: "default", Port: echoPort},
			Weights:      []v1beta1.ClusterWeight{{Cluster: mcPrimary, Weight: 80}, {Cluster: "remote1", Weight: 20}},
			HeaderRoutes: []v1beta1.HeaderRoute{{Name: "x-cluster", Value: "remote2", Cluster: "remote2"}},
		}},
	}}
	// The operator renders and applies it; a MeshIngress whose weights do
	// not add up is refused with the field and the fix in its condition.
	mustCreate(t, "MeshIngress istio-system/shop", func() error { return m.c[mcPrimary].Create(ctx, mi) })
	bad := &v1beta1.MeshIngress{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: mcNS}, Spec: *mi.Spec.DeepCopy()}
	bad.Spec.Routes[0].Weights[1].Weight = 10
	mustCreate(t, "MeshIngress istio-system/bad", func() error { return m.c[mcPrimary].Create(ctx, bad) })
	readyMsg := func(name string, want metav1.ConditionStatus) string {
		var msg string
		m.eventually(60*time.Second, "MeshIngress "+name+" Ready="+string(want), func() error {
			got := &v1beta1.MeshIngress{}
			if err := m.c[mcPrimary].Get(ctx, client.ObjectKey{Namespace: mcNS, Name: name}, got); err != nil {
				return err
			}
			c := meta.FindStatusCondition(got.Status.Conditions, meshingress.ConditionReady)
			if c == nil || c.Status != want || c.ObservedGeneration != got.Generation {
				return fmt.Errorf("condition %v", c)
			}
			msg = c.Message
			return nil
		})
		return msg
	}
	// The Istio resource here installs no gateways, so istio-gateways is
	// missing at first: the MeshIngress says so, and applies once it exists.
	t.Logf("MeshIngress shop before istio-gateways exists: %s", readyMsg("shop", metav1.ConditionFalse))
	mustCreate(t, "namespace istio-gateways", func() error {
		_, err := m.kube[mcPrimary].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: render.GatewayNamespace}}, metav1.CreateOptions{})
		return err
	})
	t.Logf("MeshIngress shop: %s", readyMsg("shop", metav1.ConditionTrue))
	badMsg := readyMsg("bad", metav1.ConditionFalse)
	t.Logf("MeshIngress bad: %s", badMsg)
	if !strings.Contains(badMsg, "spec.routes[0].weights") || !strings.Contains(badMsg, "make them add up to 100") {
		t.Errorf("bad MeshIngress message %q does not name the field and the fix", badMsg)
	}
	ic := istioclient.NewForConfigOrDie(m.env.Cluster(mcPrimary).Config)
	if drs, err := ic.NetworkingV1().DestinationRules(render.GatewayNamespace).List(ctx, metav1.ListOptions{}); err != nil || len(drs.Items) != 1 {
		t.Fatalf("DestinationRules in istio-gateways: %v (err %v), want the one of shop", drs, err)
	}

	node := gatewayNode{id: "router~198.18.6.10~istio-ingressgateway-0.istio-gateways~istio-gateways.svc.cluster.local",
		cluster: mcPrimary, region: "r1", zone: "z1"}
	addr := m.istiod.GRPCAddr

	// LDS + RDS: the gateway's HTTP listener on 80 and its routes.
	var routes string
	m.eventually(60*time.Second, "istiod serves the gateway its routes", func() error {
		res, err := node.fetch(ctx, addr, ldsType, nil)
		if err != nil {
			return err
		}
		var names []string
		for _, r := range res {
			l := &listenerv3.Listener{}
			if err := r.UnmarshalTo(l); err != nil {
				return err
			}
			names = append(names, l.Name)
		}
		t.Logf("LDS for the gateway: %v", names)
		res, err = node.fetch(ctx, addr, rdsType, []string{"http.80"})
		if err != nil {
			return err
		}
		routes, err = describeRoutes(res, "shop.example.com")
		if err != nil {
			return err
		}
		if !strings.Contains(routes, "remote2") {
			return fmt.Errorf("routes so far: %s", routes)
		}
		return nil
	})
	t.Logf("RDS http.80 for shop.example.com:\n%s", routes)
	sub := func(c string) string {
		return fmt.Sprintf("outbound|%d|%s|%s", echoPort, ingress.SubsetName(c), echoHost)
	}
	for _, want := range []string{
		"header x-cluster=remote2 prefix / -> " + sub("remote2") + " 100",
		sub(mcPrimary) + " 80", sub("remote1") + " 20",
	} {
		if !strings.Contains(routes, want) {
			t.Errorf("RDS lacks %q", want)
		}
	}

	// EDS: each subset puts its cluster first, then the others by locality.
	wantFirst := map[string][]string{
		mcPrimary: {mcPrimary, "remote1", "remote2"},
		"remote1": {"remote1", mcPrimary, "remote2"},
		"remote2": {"remote2", mcPrimary, "remote1"},
	}
	for _, c := range []string{mcPrimary, "remote1", "remote2"} {
		want := strings.Join(wantFirst[c], " > ")
		got := node.waitOrder(ctx, t, addr, sub(c), want, 60*time.Second)
		t.Logf("EDS %s (gateway in r1/z1): %s", sub(c), got)
	}

	// Shift the weights with meshctl, as a user would; RDS follows.
	meshctl := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, meshctlBin, append([]string{"--kubeconfig=" + m.env.Cluster(mcPrimary).Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("meshctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	start := time.Now()
	t.Logf("meshctl ingress weights shop primary=50,remote1=50:\n%s", meshctl("ingress", "weights", "shop", "primary=50,remote1=50"))
	m.eventually(60*time.Second, "RDS with 50/50", func() error {
		res, err := node.fetch(ctx, addr, rdsType, []string{"http.80"})
		if err != nil {
			return err
		}
		routes, err = describeRoutes(res, "shop.example.com")
		if err != nil {
			return err
		}
		if !strings.Contains(routes, sub(mcPrimary)+" 50, "+sub("remote1")+" 50") {
			return fmt.Errorf("routes: %s", routes)
		}
		return nil
	})
	t.Logf("weights shifted to 50/50; istiod served them after %v:\n%s", time.Since(start).Round(time.Millisecond), routes)
	var show string
	m.eventually(30*time.Second, "meshctl ingress show: applied and served 50/50", func() error {
		show = meshctl("ingress", "show", "shop")
		if !strings.Contains(show, "applied: yes") || !strings.Contains(show, "served: shop -> primary 50%, remote1 50%") {
			return fmt.Errorf("meshctl ingress show:\n%s", show)
		}
		return nil
	})
	t.Logf("meshctl ingress show shop:\n%s", show)

	// remote2's gateway (r2) is the other entry point: the same routes, and
	// after each pinned cluster its own region comes first.
	r2 := gatewayNode{id: "router~198.18.6.12~istio-ingressgateway-0.istio-gateways~istio-gateways.svc.cluster.local",
		cluster: "remote2", region: "r2", zone: "z2"}
	if res, err := r2.fetch(ctx, addr, rdsType, []string{"http.80"}); err != nil {
		t.Fatal(err)
	} else if r, err := describeRoutes(res, "shop.example.com"); err != nil || r != routes {
		t.Errorf("remote2's gateway routes %q (err %v), want the primary's %q", r, err, routes)
	}
	t.Logf("EDS %s (gateway in r2/z2): %s", sub(mcPrimary), r2.waitOrder(ctx, t, addr, sub(mcPrimary), "primary > remote2 > remote1", 60*time.Second))

	// A gateway in a cluster that is no entry point gets no route for the host.
	other := gatewayNode{id: "router~198.18.6.11~istio-ingressgateway-0.istio-gateways~istio-gateways.svc.cluster.local",
		cluster: "remote1", region: "r1", zone: "z2"}
	if res, err := other.fetch(ctx, addr, rdsType, []string{"http.80"}); err != nil {
		t.Fatal(err)
	} else if r, err := describeRoutes(res, "shop.example.com"); err == nil {
		t.Errorf("the gateway of remote1 (no entry cluster) has routes for shop.example.com:\n%s", r)
	}

	// Failover over one ADS stream kept open, as an Envoy's: the time from
	// the EndpointSlice write to istiod's push that moves the load.
	setReady := func(cluster string, ready bool) {
		w := ingWorkloads[cluster]
		s, err := m.kube[cluster].DiscoveryV1().EndpointSlices("default").Get(ctx, "echo-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Endpoints = echoSlice([]workload{w}, map[string]bool{w.name: !ready}).Endpoints
		if _, err := m.kube[cluster].DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := node.watch(ctx, addr, sub(mcPrimary))
	if err != nil {
		t.Fatal(err)
	}
	defer es.cancel()
	if _, err := es.until("primary > remote1 > remote2", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		what    string
		cluster string
		ready   bool
		want    string
	}{
		{"primary not ready", mcPrimary, false, "remote1 > remote2"},
		{"remote1 not ready too (region r1 down)", "remote1", false, "remote2"},
		{"remote1 ready again", "remote1", true, "remote1 > remote2"},
		{"primary ready again", mcPrimary, true, "primary > remote1 > remote2"},
	} {
		start := time.Now()
		setReady(step.cluster, step.ready)
		detail, err := es.until(step.want, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		t.Logf("%s: istiod pushed EDS %s after %v: %s", step.what, sub(mcPrimary), time.Since(start).Round(time.Millisecond), detail)
	}

	// Dropping an entry cluster prunes its Gateway.
	mustCreate(t, "entry through primary only", func() error {
		cur := &v1beta1.MeshIngress{}
		if err := m.c[mcPrimary].Get(ctx, client.ObjectKeyFromObject(mi), cur); err != nil {
			return err
		}
		cur.Spec.GatewayClusters = []string{mcPrimary}
		return m.c[mcPrimary].Update(ctx, cur)
	})
	m.eventually(60*time.Second, "Gateway meshingress-shop-remote2 pruned", func() error {
		gws, err := ic.NetworkingV1().Gateways(render.GatewayNamespace).List(ctx, metav1.ListOptions{LabelSelector: ingress.LabelIngress + "=shop"})
		if err != nil {
			return err
		}
		var names []string
		for _, g := range gws.Items {
			names = append(names, g.Name)
		}
		if strings.Join(names, ",") != "meshingress-shop-primary" {
			return fmt.Errorf("gateways %v", names)
		}
		return nil
	})

	// Deleting the MeshIngress deletes what the operator rendered from it.
	if err := m.c[mcPrimary].Delete(ctx, mi); err != nil {
		t.Fatal(err)
	}
	m.eventually(60*time.Second, "the objects of MeshIngress shop deleted", func() error {
		sel := metav1.ListOptions{LabelSelector: ingress.LabelIngress + "=shop"}
		gws, err := ic.NetworkingV1().Gateways(render.GatewayNamespace).List(ctx, sel)
		if err != nil {
			return err
		}
		vss, err := ic.NetworkingV1().VirtualServices(render.GatewayNamespace).List(ctx, sel)
		if err != nil {
			return err
		}
		drs, err := ic.NetworkingV1().DestinationRules(render.GatewayNamespace).List(ctx, sel)
		if err != nil {
			return err
		}
		if n := len(gws.Items) + len(vss.Items) + len(drs.Items); n > 0 {
			return fmt.Errorf("%d left", n)
		}
		if err := m.c[mcPrimary].Get(ctx, client.ObjectKeyFromObject(mi), &v1beta1.MeshIngress{}); err == nil {
			return fmt.Errorf("MeshIngress shop still there")
		}
		return nil
	})
}

// edsStream is one ADS stream subscribed to one EDS cluster, ACKing each push.
type edsStream struct {
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	req    *discoveryv3.DiscoveryRequest
	cancel context.CancelFunc // ends the stream (a timeout in until)
}

// watch opens an ADS stream as n and subscribes to the EDS cluster name.
func (n gatewayNode) watch(ctx context.Context, addr, name string) (*edsStream, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing istiod at %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(ctx, func() { conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening ADS stream: %w", err)
	}
	req := n.request(edsType, []string{name})
	if err := stream.Send(req); err != nil {
		cancel()
		return nil, fmt.Errorf("sending EDS request: %w", err)
	}
	return &edsStream{stream: stream, req: req, cancel: cancel}, nil
}

// until receives pushes (ACKing each) until the order is want, and returns
// the decoded assignment.
func (e *edsStream) until(want string, timeout time.Duration) (string, error) {
	timer := time.AfterFunc(timeout, e.cancel)
	defer timer.Stop()
	last := ""
	for {
		resp, err := e.stream.Recv()
		if err != nil {
			return "", fmt.Errorf("waiting for %q (last %s): %w", want, last, err)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.TypeUrl, ResourceNames: e.req.ResourceNames, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
		if err := e.stream.Send(ack); err != nil {
			return "", fmt.Errorf("ACK: %w", err)
		}
		got, detail, err := decodeOrder(resp.Resources)
		if err != nil {
			return "", err
		}
		last = detail
		if got == want {
			return detail, nil
		}
	}
}

// ingMeshctl builds meshctl once per test into its temp dir.
func ingMeshctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshfleet/meshfleet/cmd/meshctl").CombinedOutput(); err != nil {
		t.Fatalf("building meshctl: %v\n%s", err, out)
	}
	return bin
}

// gatewayNode is an xDS client with the identity of an ingress gateway Envoy.
type gatewayNode struct{ id, cluster, region, zone string }

// fetch opens an ADS stream to istiod, asks for one type and returns the
// first response's resources.
func (n gatewayNode) fetch(ctx context.Context, addr, typeURL string, names []string) ([]*anypb.Any, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing istiod at %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening ADS stream: %w", err)
	}
	if err := stream.Send(n.request(typeURL, names)); err != nil {
		return nil, fmt.Errorf("sending request: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("receiving %s: %w", typeURL, err)
	}
	return resp.Resources, nil
}

// request is the first request of a stream: the node's identity, a
// gateway's labels, its locality.
func (n gatewayNode) request(typeURL string, names []string) *discoveryv3.DiscoveryRequest {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": render.GatewayNamespace, "CLUSTER_ID": n.cluster, "ISTIO_VERSION": istioVersion,
		"LABELS": map[string]any{"istio": "ingressgateway"}, "PROXY_CONFIG": map[string]any{},
	})
	return &discoveryv3.DiscoveryRequest{
		Node:    &corev3.Node{Id: n.id, Metadata: md, Locality: &corev3.Locality{Region: n.region, Zone: n.zone}},
		TypeUrl: typeURL, ResourceNames: names,
	}
}

// order reads the EDS of one cluster and returns where an Envoy sends its
// traffic: the clusters in priority order ("a > b > c"; equal priorities
// joined by "+"), counting only priorities with a healthy endpoint. istiod keeps a
// not-ready endpoint in its locality and priority, marked UNHEALTHY; Envoy
// gives each priority min(100%, 1.4 × its healthy share) of what the higher
// priorities left (overprovisioning factor 1.4), which load computes.
func (n gatewayNode) order(ctx context.Context, addr, name string) (string, string, error) {
	res, err := n.fetch(ctx, addr, edsType, []string{name})
	if err != nil {
		return "", "", err
	}
	return decodeOrder(res)
}

// decodeOrder is order's reading of one EDS response.
func decodeOrder(res []*anypb.Any) (string, string, error) {
	byPrio := map[uint32][]string{}
	healthy, total := map[uint32]int{}, map[uint32]int{}
	var detail []string
	for _, r := range res {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			return "", "", err
		}
		for _, le := range cla.Endpoints {
			loc := le.GetLocality().GetRegion() + "/" + le.GetLocality().GetZone()
			var eps []string
			for _, e := range le.LbEndpoints {
				eps = append(eps, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()+" "+e.HealthStatus.String())
				total[le.Priority]++
				if e.HealthStatus == corev3.HealthStatus_HEALTHY || e.HealthStatus == corev3.HealthStatus_UNKNOWN {
					healthy[le.Priority]++
				}
			}
			detail = append(detail, fmt.Sprintf("priority %d %s (%s) %v", le.Priority, loc, ingCluster(loc), eps))
			if len(le.LbEndpoints) > 0 {
				byPrio[le.Priority] = append(byPrio[le.Priority], ingCluster(loc))
			}
		}
	}
	var prios []uint32
	for p := range byPrio {
		prios = append(prios, p)
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })
	var parts, loads []string
	left := 100.0
	for _, p := range prios {
		h := min(100, 140*float64(healthy[p])/float64(total[p]))
		l := min(left, h)
		left -= l
		sort.Strings(byPrio[p])
		loads = append(loads, fmt.Sprintf("P%d %s %.0f%%", p, strings.Join(byPrio[p], "+"), l))
		if healthy[p] > 0 {
			parts = append(parts, strings.Join(byPrio[p], "+"))
		}
	}
	sort.Strings(detail)
	return strings.Join(parts, " > "), strings.Join(detail, "; ") + " | Envoy priority load: " + strings.Join(loads, ", "), nil
}

// waitOrder polls EDS until order returns want; it returns the decoded detail.
func (n gatewayNode) waitOrder(ctx context.Context, t *testing.T, addr, name, want string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var got, detail string
	var err error
	for ctx.Err() == nil {
		got, detail, err = n.order(ctx, addr, name)
		if err == nil && got == want {
			return detail
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("EDS %s: order %q (err %v; %s), want %q", name, got, err, detail, want)
	return ""
}

// describeRoutes prints the routes of host's virtual host, one a line:
// match -> cluster weight.
func describeRoutes(res []*anypb.Any, host string) (string, error) {
	var lines []string
	for _, r := range res {
		rc := &routev3.RouteConfiguration{}
		if err := r.UnmarshalTo(rc); err != nil {
			return "", err
		}
		for _, vh := range rc.VirtualHosts {
			if !contains(vh.Domains, host) {
				continue
			}
			for _, rt := range vh.Routes {
				m := "prefix " + rt.GetMatch().GetPrefix()
				for _, h := range rt.GetMatch().GetHeaders() {
					m = "header " + h.Name + "=" + h.GetStringMatch().GetExact() + " " + m
				}
				ra := rt.GetRoute()
				if c := ra.GetCluster(); c != "" {
					lines = append(lines, fmt.Sprintf("%s -> %s 100", m, c))
				}
				var ws []string
				for _, wc := range ra.GetWeightedClusters().GetClusters() {
					ws = append(ws, fmt.Sprintf("%s %d", wc.Name, wc.GetWeight().GetValue()))
				}
				if len(ws) > 0 {
					lines = append(lines, m+" -> "+strings.Join(ws, ", "))
				}
			}
		}
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("no virtual host for %s", host)
	}
	return strings.Join(lines, "\n"), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
