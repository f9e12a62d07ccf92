//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/internal/sandbox"
	"github.com/meshfleet/meshfleet/pkg/canary"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/tests/dashboards"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// The interop test's services, both in namespace ioNS: podinfo, a Flagger
// canary (Deployments in the primary, on kwok's fake Nodes in zones z1
// and z2), and reviews, shifted by meshctl canary (Pods in remote-1, in
// the same two zones). Every version of each runs a real gRPC server per
// zone, on its own address.
const (
	ioNS          = "shop"
	ioPodinfo     = "podinfo"
	ioPodinfoPort = 9898
	ioReviews     = "reviews"
	ioReviewsPort = 9080
	ioRegion      = "r1"
)

// ioServer is one real server: which service, version and zone it is.
type ioServer struct {
	service, version, zone string
	addr                   netip.Addr
}

var ioServers = func() []ioServer {
	var out []ioServer
	for i, svc := range []string{ioPodinfo, ioReviews} {
		for j, v := range []string{"v1", "v2"} {
			for k, z := range []string{"z1", "z2"} {
				out = append(out, ioServer{svc, v, z, netip.AddrFrom4([4]byte{198, 18, 50, byte(1 + 10*i + 2*j + k)})})
			}
		}
	}
	return out
}()

var ioClientAddr = netip.MustParseAddr("198.18.50.100")

func ioServerFor(service, version, zone string) (ioServer, bool) {
	for _, s := range ioServers {
		if s.service == service && s.version == version && s.zone == zone {
			return s, true
		}
	}
	return ioServer{}, false
}

func ioServerAt(a net.Addr) (ioServer, bool) {
	if a == nil {
		return ioServer{}, false
	}
	host, _, _ := net.SplitHostPort(a.String())
	for _, s := range ioServers {
		if s.addr.String() == host {
			return s, true
		}
	}
	return ioServer{}, false
}

var (
	canaryGVR         = schema.GroupVersionResource{Group: "flagger.app", Version: "v1beta1", Resource: "canaries"}
	metricTemplateGVR = schema.GroupVersionResource{Group: "flagger.app", Version: "v1beta1", Resource: "metrictemplates"}
	drGVR             = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
)

// TestCanaryInterop runs a Flagger canary of podinfo (Flagger v1.36.1 as a
// real process, built by make tools, reading a real Prometheus) and
// meshctl canary's controller on reviews in one multi-cluster sandbox mesh
// (real istiod, the locality server, kwok's Nodes in the primary) and
// checks with real proxyless gRPC RPCs, 2,500 per split, that each
// service's split is the one its controller set, that neither controller
// changed the other's VirtualServices or DestinationRules, that Flagger
// promotes, and that meshfleet's locality rules hold for every host,
// Flagger's podinfo-primary and podinfo-canary included: a client in z1
// is answered from z1 only.
func TestCanaryInterop(t *testing.T) {
	flaggerBin := os.Getenv("MESHFLEET_FLAGGER")
	if flaggerBin == "" {
		t.Skip("MESHFLEET_FLAGGER is not set: run `make tools` (it builds Flagger) and the tests through make, or export the Makefile's MESHFLEET_FLAGGER")
	}
	crds := os.Getenv("MESHFLEET_FLAGGER_CRDS")
	if crds == "" {
		crds = filepath.Join(filepath.Dir(flaggerBin), "crd.yaml")
	}
	kubectl := os.Getenv("MESHFLEET_KUBECTL")
	if kubectl == "" {
		t.Skip("MESHFLEET_KUBECTL is not set: run `make tools`")
	}
	addrs := []netip.Addr{ioClientAddr}
	for _, s := range ioServers {
		addrs = append(addrs, s.addr)
	}
	if err := netns.Setup(addrs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testenv.Context(t), 15*time.Minute)
	t.Cleanup(cancel)

	dir := filepath.Join(t.TempDir(), "sandbox")
	sb, err := sandbox.Up(ctx, sandbox.Options{Dir: dir, Remotes: 1, Direct: true, NoDemo: true, Progress: tlog{t}})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"locality.log", "istiod/istiod.log", "flagger.log"} {
				t.Logf("last lines of %s:\n%s", f, localproc.TailFile(filepath.Join(dir, f), 20))
			}
		}
		if err := sb.Down(); err != nil {
			t.Errorf("sandbox down: %v", err)
		}
	})
	primary, remote := sb.Clusters[0], sb.Clusters[1]
	pk := kubernetes.NewForConfigOrDie(primary.Config)
	rk := kubernetes.NewForConfigOrDie(remote.Config)
	pd := dynamic.NewForConfigOrDie(primary.Config)
	ic := istioclient.NewForConfigOrDie(primary.Config)

	for _, s := range ioServers {
		startIOServer(t, s.addr)
	}
	// Flagger's CRDs, from its module (make tools copies them beside the binary).
	if out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", primary.Kubeconfig, "apply", "--server-side", "-f", crds).CombinedOutput(); err != nil {
		t.Fatalf("applying Flagger's CRDs %s: %v\n%s", crds, err, out)
	}

	// Zones: the primary's kwok Node in z1 and a second kwok Node in z2;
	// remote-1 gets two plain Nodes (reviews' Pods are written by hand).
	labelZone := func(n *corev1.Node, zone string) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels["topology.kubernetes.io/region"] = ioRegion
		n.Labels["topology.kubernetes.io/zone"] = zone
	}
	node, err := pk.CoreV1().Nodes().Get(ctx, localcluster.FakeNodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	labelZone(node, "z1")
	if _, err := pk.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	second := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "kwok-z2", Annotations: node.Annotations, Labels: map[string]string{
		"kubernetes.io/hostname": "kwok-z2", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"}}}
	labelZone(second, "z2")
	second.Status.Capacity = node.Status.Capacity
	second.Status.Allocatable = node.Status.Allocatable
	mustCreate(t, "node kwok-z2", func() error { _, err := pk.CoreV1().Nodes().Create(ctx, second, metav1.CreateOptions{}); return err })
	testenv.Eventually(t, time.Minute, "kwok reports Node kwok-z2 Ready", func() error {
		n, err := pk.CoreV1().Nodes().Get(ctx, "kwok-z2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", n.Status.Conditions)
	})
	for _, z := range []string{"z1", "z2"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "remote-" + z}}
		labelZone(n, z)
		mustCreate(t, "remote node "+n.Name, func() error { _, err := rk.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); return err })
	}
	for _, k := range []kubernetes.Interface{pk, rk} {
		mustCreate(t, "namespace "+ioNS, func() error {
			_, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ioNS}}, metav1.CreateOptions{})
			return err
		})
	}

	// remote-1 runs no serviceaccount controller.
	mustCreate(t, "serviceaccount "+ioNS+"/default in remote-1", func() error {
		_, err := rk.CoreV1().ServiceAccounts(ioNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		return err
	})

	// reviews: the Service in both clusters, its Pods and EndpointSlice in
	// remote-1, one Pod per version and zone.
	createIOReviews(ctx, t, pk, rk)
	// podinfo: a Deployment of two replicas spread over the zones, which
	// Flagger takes over; the test plays the EndpointSlice controller for
	// the Services Flagger creates (the primary runs none, decision 45).
	createIOPodinfo(ctx, t, pk)
	syncCtx, stopSync := context.WithCancel(ctx)
	synced := make(chan struct{})
	go func() { defer close(synced); syncIOEndpoints(syncCtx, t, pk) }()
	t.Cleanup(func() { stopSync(); <-synced }) // before the sandbox stops

	// The client, in z1 of the primary, and a Prometheus scraping its
	// Istio-standard metrics (Flagger's analysis reads them).
	mesh := dashboards.NewMeshMetrics()
	prom := dashboards.StartPrometheus(t, map[string][]string{"interop-client": {mesh.Serve(t)}}, time.Second)
	nodeID := "sidecar~" + ioClientAddr.String() + "~client.default~default.svc.cluster.local"
	bootstrap := xdsBootstrap(sb.Istiod.GRPCAddr, nodeID, "primary", ioRegion, "z1")
	clients := map[string]*ioClient{
		ioPodinfo: {cc: dialXDS(t, fmt.Sprintf("xds:///%s.%s.svc.cluster.local:%d", ioPodinfo, ioNS, ioPodinfoPort), bootstrap), mesh: mesh},
		ioReviews: {cc: dialXDS(t, fmt.Sprintf("xds:///%s.%s.svc.cluster.local:%d", ioReviews, ioNS, ioReviewsPort), bootstrap), mesh: mesh},
	}

	// Flagger, outside the cluster, on the primary.
	mustCreate(t, "MetricTemplate "+ioNS+"/grpc-success-rate", func() error {
		_, err := pd.Resource(metricTemplateGVR).Namespace(ioNS).Create(ctx, ioMetricTemplate(prom.URL), metav1.CreateOptions{})
		return err
	})
	port, err := localproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	flagger, err := localproc.Start("flagger", flaggerBin, []string{
		"-kubeconfig=" + primary.Kubeconfig, "-mesh-provider=istio", "-metrics-server=" + prom.URL,
		"-namespace=" + ioNS, "-control-loop-interval=2s", "-log-level=info", "-zap-encoding=console",
		fmt.Sprintf("-port=%d", port), "-enable-config-tracking=false", "-cluster-name=primary",
	}, nil, filepath.Join(dir, "flagger.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flagger.Stop(5 * time.Second) })
	mustCreate(t, "Canary "+ioNS+"/"+ioPodinfo, func() error {
		_, err := pd.Resource(canaryGVR).Namespace(ioNS).Create(ctx, ioCanary(), metav1.CreateOptions{})
		return err
	})
	canaryPhase := func() (string, int64) {
		u, err := pd.Resource(canaryGVR).Namespace(ioNS).Get(ctx, ioPodinfo, metav1.GetOptions{})
		if err != nil {
			return "error: " + err.Error(), 0
		}
		p, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		w, _, _ := unstructured.NestedInt64(u.Object, "status", "canaryWeight")
		return p, w
	}
	testenv.Eventually(t, 4*time.Minute, "Flagger initialises the canary of podinfo", func() error {
		if p, _ := canaryPhase(); p != "Initialized" {
			return fmt.Errorf("phase %q (Flagger log: %s)", p, localproc.TailFile(filepath.Join(dir, "flagger.log"), 3))
		}
		return nil
	})

	// Background traffic through both services, so that Flagger's gate has
	// real requests to read; paused while a split is measured.
	var paused atomic.Bool
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for bg.Err() == nil {
			if !paused.Load() {
				clients[ioPodinfo].call(bg, 20)
				clients[ioReviews].call(bg, 5)
			}
			time.Sleep(20 * time.Millisecond) // pacing, not synchronisation
		}
	}()
	t.Cleanup(func() { stopBG(); wg.Wait() })

	// measure sends 2,500 RPCs once istiod serves want on the service's
	// route, and checks the shares per version (± 5 points, 5σ at 50/50)
	// and that every RPC was answered in the client's zone, z1.
	measure := func(svc string, port int, want map[string]uint32, shares map[string]float64) map[string]int {
		t.Helper()
		host := fmt.Sprintf("%s.%s.svc.cluster.local", svc, ioNS)
		waitRouteWeights(ctx, t, sb.Istiod.GRPCAddr, nodeID, "primary", fmt.Sprintf("outbound|%d||%s", port, host), want)
		paused.Store(true)
		defer paused.Store(false)
		c := clients[svc]
		c.call(ctx, 50) // let the client's own stream catch up
		const n = 2500
		got := c.call(ctx, n)
		byVersion := map[string]int{}
		for k, v := range got {
			if strings.HasSuffix(k, "@z2") || strings.HasPrefix(k, "error") {
				t.Fatalf("%s: %d of %d RPCs from z1 were not answered in z1 (%s): all %v", svc, v, n, k, got)
			}
			byVersion[strings.TrimSuffix(k, "@z1")] += v
		}
		for v, share := range shares {
			pct := 100 * float64(byVersion[v]) / n
			if pct < 100*share-5 || pct > 100*share+5 {
				t.Fatalf("%s: %s answered %.1f%% of %d RPCs, want %.0f%% ± 5 (all: %v)", svc, v, pct, n, 100*share, got)
			}
		}
		t.Logf("%s: istiod serves %v; %d RPCs from z1 answered %v", svc, want, n, got)
		return got
	}
	podinfoRoute := func(primaryW, canaryW uint32) map[string]uint32 {
		out := map[string]uint32{}
		if primaryW > 0 {
			out[fmt.Sprintf("outbound|%d||%s-primary.%s.svc.cluster.local", ioPodinfoPort, ioPodinfo, ioNS)] = primaryW
		}
		if canaryW > 0 {
			out[fmt.Sprintf("outbound|%d||%s-canary.%s.svc.cluster.local", ioPodinfoPort, ioPodinfo, ioNS)] = canaryW
		}
		return out
	}
	reviewsRoute := func(stable, canaryW uint32) map[string]uint32 {
		out := map[string]uint32{}
		if stable > 0 {
			out[fmt.Sprintf("outbound|%d|stable|%s.%s.svc.cluster.local", ioReviewsPort, ioReviews, ioNS)] = stable
		}
		if canaryW > 0 {
			out[fmt.Sprintf("outbound|%d|canary|%s.%s.svc.cluster.local", ioReviewsPort, ioReviews, ioNS)] = canaryW
		}
		return out
	}

	// 1. meshctl canary starts on reviews: 80/20.
	ctl := &canary.Controller{Istio: ic, Namespace: ioNS}
	st, err := ctl.Start(ctx, canary.StartOptions{
		Service:      ioReviews,
		StableLabels: map[string]string{"version": "v1"},
		CanaryLabels: map[string]string{"version": "v2"},
		Steps:        []int32{20, 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	measure(ioReviews, ioReviewsPort, reviewsRoute(80, 20), map[string]float64{"v1": 0.8, "v2": 0.2})
	meshctlRV := ioResourceVersions(ctx, t, ic, ioReviews)
	t.Logf("meshctl canary on reviews: %s %s", st.Split, st.Phase)

	// 2. A new podinfo revision: Flagger shifts 30% to the canary.
	rolled := time.Now()
	d, err := pk.AppsV1().Deployments(ioNS).Get(ctx, ioPodinfo, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Labels["version"] = "v2"
	if _, err := pk.AppsV1().Deployments(ioNS).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 4*time.Minute, "Flagger shifts 30% of podinfo to the canary", func() error {
		if p, w := canaryPhase(); p != "Progressing" || w != 30 {
			return fmt.Errorf("phase %q, canary weight %d", p, w)
		}
		return nil
	})
	t.Logf("Flagger: podinfo at 30%% canary %v after the new revision", time.Since(rolled).Round(time.Second))
	measure(ioPodinfo, ioPodinfoPort, podinfoRoute(70, 30), map[string]float64{"v1": 0.7, "v2": 0.3})
	// reviews keeps meshctl canary's split while Flagger moves podinfo.
	measure(ioReviews, ioReviewsPort, reviewsRoute(80, 20), map[string]float64{"v1": 0.8, "v2": 0.2})
	checkIOLocalityRules(ctx, t, pd, ioPodinfo, ioPodinfo+"-primary", ioPodinfo+"-canary", ioReviews)

	// 3. meshctl canary promotes reviews while Flagger's canary runs.
	flaggerSpecs := ioFlaggerObjects(ctx, t, ic)
	checkIOOwnership(ctx, t, ic)
	if got := ioResourceVersions(ctx, t, ic, ioReviews); !reflect.DeepEqual(got, meshctlRV) {
		t.Fatalf("meshctl canary's objects for reviews changed while only Flagger wrote: %v, then %v", meshctlRV, got)
	}
	if st, err = ctl.Promote(ctx, ioReviews); err != nil {
		t.Fatal(err)
	}
	measure(ioReviews, ioReviewsPort, reviewsRoute(0, 100), map[string]float64{"v2": 1})
	// Flagger's routes for podinfo still hold its 70/30 (unless Flagger
	// itself has moved on to the promotion meanwhile).
	if p, w := canaryPhase(); p == "Progressing" && w == 30 {
		if got := ioFlaggerObjects(ctx, t, ic); !reflect.DeepEqual(got, flaggerSpecs) {
			t.Fatalf("Flagger's objects changed while meshctl canary promoted reviews and Flagger held its step: %v, then %v", flaggerSpecs, got)
		}
	}

	// 4. Flagger promotes podinfo: everything on v2, in z1.
	testenv.Eventually(t, 5*time.Minute, "Flagger promotes podinfo", func() error {
		if p, w := canaryPhase(); p != "Succeeded" {
			return fmt.Errorf("phase %q, canary weight %d (Flagger log: %s)", p, w, localproc.TailFile(filepath.Join(dir, "flagger.log"), 3))
		}
		return nil
	})
	promoted := time.Since(rolled).Round(time.Second)
	t.Logf("Flagger promoted podinfo %v after the new revision", promoted)
	testenv.Eventually(t, 2*time.Minute, "podinfo-primary runs v2 in both zones", func() error {
		eps, err := pk.DiscoveryV1().EndpointSlices(ioNS).Get(ctx, ioPodinfo+"-primary-e2e", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var got []string
		for _, e := range eps.Endpoints {
			s, _ := ioServerByIP(e.Addresses[0])
			got = append(got, s.version+"@"+s.zone)
		}
		if strings.Join(got, " ") != "v2@z1 v2@z2" {
			return fmt.Errorf("podinfo-primary's endpoints are %v", got)
		}
		return nil
	})
	measure(ioPodinfo, ioPodinfoPort, podinfoRoute(100, 0), map[string]float64{"v2": 1})
	// Flagger scaled the canary to zero: podinfo-canary has no endpoints,
	// so no rule (translate: "no endpoints in any cluster").
	checkIOLocalityRules(ctx, t, pd, ioPodinfo, ioPodinfo+"-primary", ioReviews)

	// 5. Ownership: neither controller's objects carry the other's (or
	// the locality server's) field manager.
	checkIOOwnership(ctx, t, ic)
	if got := ioResourceVersions(ctx, t, ic, ioReviews); got["VirtualService/"+ioReviews] == "" {
		t.Fatalf("meshctl canary's VirtualService reviews is gone: %v", got)
	}
	stopBG()
	wg.Wait()
}

// ioClient calls one service and records each RPC as Istio's sidecar
// would report it.
type ioClient struct {
	cc   *grpc.ClientConn
	mesh *dashboards.MeshMetrics
}

// call makes n RPCs and counts them by "version@zone" of the server that
// answered; RPCs that reached none count under "error: …".
func (c *ioClient) call(ctx context.Context, n int) map[string]int {
	counts := map[string]int{}
	hc := healthpb.NewHealthClient(c.cc)
	for range n {
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		elapsed := time.Since(start)
		cancel()
		s, ok := ioServerAt(p.Addr)
		if !ok {
			if ctx.Err() == nil {
				counts[fmt.Sprintf("error: %v", status.Code(err))]++
			}
			continue
		}
		counts[s.version+"@"+s.zone]++
		c.mesh.Observe(dashboards.Request{
			SourceWorkload: "interop-client", SourceNamespace: "default", SourceCluster: "primary",
			Service: s.service + "." + ioNS + ".svc.cluster.local", ServiceName: s.service, ServiceNamespace: ioNS,
			DestWorkload: s.service + "-" + s.version, DestNamespace: ioNS, DestVersion: s.version, DestCluster: "primary",
			GRPCStatus: int(status.Code(err)), Duration: elapsed,
		})
	}
	return counts
}

func startIOServer(t *testing.T, addr netip.Addr) {
	t.Helper()
	for _, port := range []int{ioPodinfoPort, ioReviewsPort} {
		l, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		if err != nil {
			t.Fatalf("listening on %s:%d: %v", addr, port, err)
		}
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, &versionServer{})
		go func() { _ = s.Serve(l) }()
		t.Cleanup(s.Stop)
	}
}

func ioServerByIP(ip string) (ioServer, bool) {
	for _, s := range ioServers {
		if s.addr.String() == ip {
			return s, true
		}
	}
	return ioServer{}, false
}

// createIOReviews creates reviews: the Service (no selector) in both
// clusters; in remote-1 a Pod per version and zone, Ready, with the
// server's address, and their EndpointSlice.
func createIOReviews(ctx context.Context, t *testing.T, pk, rk kubernetes.Interface) {
	t.Helper()
	svc := func() *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: ioReviews, Namespace: ioNS},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Name: "grpc", Port: ioReviewsPort, Protocol: corev1.ProtocolTCP, AppProtocol: ptr("grpc"),
			}}},
		}
	}
	for name, k := range map[string]kubernetes.Interface{"primary": pk, "remote-1": rk} {
		mustCreate(t, "service reviews in "+name, func() error {
			_, err := k.CoreV1().Services(ioNS).Create(ctx, svc(), metav1.CreateOptions{})
			return err
		})
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: ioReviews + "-e2e", Namespace: ioNS, Labels: map[string]string{
			discoveryv1.LabelServiceName: ioReviews, discoveryv1.LabelManagedBy: "meshfleet-e2e",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(ioReviewsPort)), Protocol: ptr(corev1.ProtocolTCP), AppProtocol: ptr("grpc")}},
	}
	for _, s := range ioServers {
		if s.service != ioReviews {
			continue
		}
		name := fmt.Sprintf("reviews-%s-%s", s.version, s.zone)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ioNS, Labels: map[string]string{"app": ioReviews, "version": s.version}},
			Spec: corev1.PodSpec{NodeName: "remote-" + s.zone, Containers: []corev1.Container{{
				Name: "reviews", Image: "reviews", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: ioReviewsPort}},
			}}},
		}
		mustCreate(t, "pod "+name, func() error {
			created, err := rk.CoreV1().Pods(ioNS).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			created.Status = corev1.PodStatus{
				Phase: corev1.PodRunning, PodIP: s.addr.String(), PodIPs: []corev1.PodIP{{IP: s.addr.String()}}, HostIP: "127.0.0.1",
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			}
			_, err = rk.CoreV1().Pods(ioNS).UpdateStatus(ctx, created, metav1.UpdateOptions{})
			return err
		})
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{s.addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			NodeName:   ptr("remote-" + s.zone),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ioNS, Name: name},
		})
	}
	mustCreate(t, "endpointslice reviews in remote-1", func() error {
		_, err := rk.DiscoveryV1().EndpointSlices(ioNS).Create(ctx, slice, metav1.CreateOptions{})
		return err
	})
}

// createIOPodinfo creates podinfo's Deployment (v1, two replicas, one per
// zone) and its Service, as a user would before handing it to Flagger.
func createIOPodinfo(ctx context.Context, t *testing.T, pk kubernetes.Interface) {
	t.Helper()
	sel := map[string]string{"app": ioPodinfo}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: ioPodinfo, Namespace: ioNS, Labels: sel},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			// One Pod at a time (Flagger copies the strategy to
			// podinfo-primary), and never two in a zone (Flagger rewrites
			// the anti-affinity's selector for podinfo-primary): a new
			// Pod waits for the zone its predecessor leaves. The spread
			// constraint alone did not hold through a rollout: the new
			// ReplicaSet's Pod can be created before the old one's
			// deletion, when both zones still count one, and land beside
			// its sibling.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr(intstr.FromInt32(0)), MaxUnavailable: ptr(intstr.FromInt32(1)),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": ioPodinfo, "version": "v1"}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "podinfo", Image: "podinfo", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: ioPodinfoPort}},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}},
					}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector: &metav1.LabelSelector{MatchLabels: sel},
					}},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							TopologyKey: "topology.kubernetes.io/zone", LabelSelector: &metav1.LabelSelector{MatchLabels: sel},
						}},
					}},
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
	mustCreate(t, "deployment podinfo", func() error {
		_, err := pk.AppsV1().Deployments(ioNS).Create(ctx, d, metav1.CreateOptions{})
		return err
	})
}

// syncIOEndpoints plays the EndpointSlice controller for the primary's
// Services with a selector in ioNS (Flagger's podinfo, podinfo-primary and
// podinfo-canary): every Ready Pod they select becomes an endpoint at the
// address of the server for its version label and its Node's zone.
func syncIOEndpoints(ctx context.Context, t *testing.T, pk kubernetes.Interface) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	zones := map[string]string{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := syncIOEndpointsOnce(ctx, pk, zones); err != nil && ctx.Err() == nil {
			t.Logf("endpoints: %v", err)
		}
	}
}

func syncIOEndpointsOnce(ctx context.Context, pk kubernetes.Interface, zones map[string]string) error {
	svcs, err := pk.CoreV1().Services(ioNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	pods, err := pk.CoreV1().Pods(ioNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, svc := range svcs.Items {
		if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) == 0 {
			continue
		}
		port := svc.Spec.Ports[0]
		want := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-e2e", Namespace: ioNS, Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "meshfleet-e2e",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr(port.Name), Port: ptr(port.Port), Protocol: ptr(corev1.ProtocolTCP), AppProtocol: ptr("grpc")}},
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		seen := map[string]bool{}
		for _, p := range pods.Items {
			if !sel.Matches(labels.Set(p.Labels)) || p.DeletionTimestamp != nil || p.Spec.NodeName == "" || !podReady(&p) {
				continue
			}
			zone, ok := zones[p.Spec.NodeName]
			if !ok {
				n, err := pk.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
				if err != nil {
					return err
				}
				zone = n.Labels["topology.kubernetes.io/zone"]
				zones[p.Spec.NodeName] = zone
			}
			s, ok := ioServerFor(ioPodinfo, p.Labels["version"], zone)
			if !ok || seen[s.addr.String()] {
				continue
			}
			seen[s.addr.String()] = true
			want.Endpoints = append(want.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{s.addr.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
				NodeName:   ptr(p.Spec.NodeName),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ioNS, Name: p.Name, UID: p.UID},
			})
		}
		slices.SortFunc(want.Endpoints, func(a, b discoveryv1.Endpoint) int { return strings.Compare(a.Addresses[0], b.Addresses[0]) })
		api := pk.DiscoveryV1().EndpointSlices(ioNS)
		live, err := api.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, want, metav1.CreateOptions{})
		case err == nil && !reflect.DeepEqual(live.Endpoints, want.Endpoints):
			live.Endpoints = want.Endpoints
			_, err = api.Update(ctx, live, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("EndpointSlice %s/%s: %w", ioNS, want.Name, err)
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ioMetricTemplate is Flagger's gate: the canary version's gRPC success
// rate, from the client's Istio-standard metrics in Prometheus.
func ioMetricTemplate(promURL string) *unstructured.Unstructured {
	sel := `destination_service_namespace="` + ioNS + `",destination_service_name="` + ioPodinfo + `",destination_version="v2"`
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
		"metadata": map[string]any{"name": "grpc-success-rate", "namespace": ioNS},
		"spec": map[string]any{
			"provider": map[string]any{"type": "prometheus", "address": promURL},
			"query": `100 * sum(rate(istio_requests_total{` + sel + `,grpc_response_status="0"}[{{ interval }}]))` +
				` / sum(rate(istio_requests_total{` + sel + `}[{{ interval }}]))`,
		},
	}}
}

// ioCanary is Flagger's Canary for podinfo: one step to 30%, then
// promotion, each step after a passing analysis of 20 s.
func ioCanary() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
		"metadata": map[string]any{"name": ioPodinfo, "namespace": ioNS},
		"spec": map[string]any{
			"targetRef":               map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": ioPodinfo},
			"progressDeadlineSeconds": int64(600),
			"service":                 map[string]any{"port": int64(ioPodinfoPort), "portName": "grpc", "appProtocol": "grpc"},
			"analysis": map[string]any{
				"interval": "20s", "threshold": int64(5), "maxWeight": int64(30), "stepWeight": int64(30),
				"metrics": []any{map[string]any{
					"name": "grpc-success-rate", "interval": "20s",
					"templateRef":    map[string]any{"name": "grpc-success-rate", "namespace": ioNS},
					"thresholdRange": map[string]any{"min": int64(99)},
				}},
			},
		},
	}}
}

// ioResourceVersions are the resourceVersions of the VirtualServices and
// DestinationRules meshctl canary keeps for svc.
func ioResourceVersions(ctx context.Context, t *testing.T, ic istioclient.Interface, svc string) map[string]string {
	t.Helper()
	out := map[string]string{}
	vss, err := ic.NetworkingV1().VirtualServices(ioNS).List(ctx, metav1.ListOptions{LabelSelector: canary.LabelCanary + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vss.Items {
		out["VirtualService/"+v.Name] = v.ResourceVersion
	}
	drs, err := ic.NetworkingV1().DestinationRules(ioNS).List(ctx, metav1.ListOptions{LabelSelector: canary.LabelCanary + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drs.Items {
		out["DestinationRule/"+d.Name] = d.ResourceVersion
	}
	return out
}

// ioFlaggerObjects are the specs of Flagger's VirtualService and
// DestinationRules for podinfo.
func ioFlaggerObjects(ctx context.Context, t *testing.T, ic istioclient.Interface) map[string]string {
	t.Helper()
	out := map[string]string{}
	vs, err := ic.NetworkingV1().VirtualServices(ioNS).Get(ctx, ioPodinfo, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Flagger's VirtualService %s/%s: %v", ioNS, ioPodinfo, err)
	}
	out["VirtualService/"+vs.Name] = vs.Spec.String()
	for _, n := range []string{ioPodinfo + "-primary", ioPodinfo + "-canary"} {
		dr, err := ic.NetworkingV1().DestinationRules(ioNS).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Flagger's DestinationRule %s/%s: %v", ioNS, n, err)
		}
		out["DestinationRule/"+n] = dr.Spec.String()
	}
	return out
}

// checkIOOwnership checks every VirtualService and DestinationRule of
// ioNS: Flagger's are written by Flagger only, meshctl canary's by meshctl
// canary only, and the locality server's own rules are separate objects.
func checkIOOwnership(ctx context.Context, t *testing.T, ic istioclient.Interface) {
	t.Helper()
	managers := func(fs []metav1.ManagedFieldsEntry) []string {
		var out []string
		for _, f := range fs {
			if !slices.Contains(out, f.Manager) {
				out = append(out, f.Manager)
			}
		}
		slices.Sort(out)
		return out
	}
	expect := func(kind, name string, lbls map[string]string, fs []metav1.ManagedFieldsEntry) {
		got := managers(fs)
		var want string
		switch {
		case lbls[canary.LabelCanary] != "":
			want = "meshctl-canary"
		case lbls[locality.LabelManagedBy] == locality.ManagedBy:
			want = locality.ManagedBy
		default:
			want = "flagger"
		}
		for _, m := range got {
			if m != want {
				t.Errorf("%s %s/%s: written by %v, want only %s", kind, ioNS, name, got, want)
			}
		}
		t.Logf("%s %s/%s: managers %v", kind, ioNS, name, got)
	}
	vss, err := ic.NetworkingV1().VirtualServices(ioNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vss.Items {
		expect("VirtualService", v.Name, v.Labels, v.ManagedFields)
	}
	drs, err := ic.NetworkingV1().DestinationRules(ioNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drs.Items {
		expect("DestinationRule", d.Name, d.Labels, d.ManagedFields)
	}
}

// checkIOLocalityRules checks that the locality server keeps a rule with
// a locality policy for each of the services of ioNS (podinfo, Flagger's
// podinfo-primary and podinfo-canary, reviews).
func checkIOLocalityRules(ctx context.Context, t *testing.T, pd dynamic.Interface, services ...string) {
	t.Helper()
	var want []string
	for _, s := range services {
		want = append(want, s+"."+ioNS+".svc.cluster.local")
	}
	testenv.Eventually(t, time.Minute, "a locality rule for every host of "+ioNS, func() error {
		list, err := pd.Resource(drGVR).List(ctx, metav1.ListOptions{LabelSelector: locality.LabelManagedBy + "=" + locality.ManagedBy})
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, u := range list.Items {
			h, _, _ := unstructured.NestedString(u.Object, "spec", "host")
			if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "trafficPolicy", "outlierDetection"); ok {
				got[h] = u.GetNamespace() + "/" + u.GetName()
			}
		}
		var missing []string
		for _, h := range want {
			if got[h] == "" {
				missing = append(missing, h)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no locality rule for %v (rules: %v)", missing, got)
		}
		return nil
	})
}
