//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/canary"
	"github.com/meshfleet/meshfleet/tests/dashboards"
)

// The canary test's workloads: one pod per version of the reviews service,
// all on one node; v3 answers every RPC with an error.
const (
	reviewsService = "reviews"
	reviewsPort    = 7080
	reviewsHost    = "reviews.default.svc.cluster.local"
)

type version struct {
	name string // v1, v2, v3
	addr netip.Addr
	fail bool
}

var reviewsVersions = []version{
	{"v1", netip.MustParseAddr("198.18.2.1"), false},
	{"v2", netip.MustParseAddr("198.18.2.2"), false},
	{"v3", netip.MustParseAddr("198.18.2.3"), true},
}

// TestCanaryTrafficShift runs pkg/canary against real istiod and measures
// the split with a real proxyless gRPC client: 90/10, 50/50 and promotion
// of v2, each from 2,500 RPCs; a user's header route and the
// DestinationRule's locality policy survive every step; then a canary of
// v3, whose servers fail, is rolled back by the gate reading a real
// Prometheus that scrapes the client's Istio-standard metrics.
func TestCanaryTrafficShift(t *testing.T) {
	var addrs []netip.Addr
	for _, v := range reviewsVersions {
		addrs = append(addrs, v.addr)
	}
	if err := netns.Setup(addrs...); err != nil {
		t.Fatal(err)
	}
	const cluster = "primary"
	s := startStack(t, cluster, meshConfig)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	createNodes(ctx, t, s.kube, workloads[:1])
	createReviews(ctx, t, s)
	for _, v := range reviewsVersions {
		startVersionServer(t, v)
	}
	ic := istioclient.NewForConfigOrDie(s.cluster.Config)
	createUserRouting(ctx, t, ic)

	mesh := dashboards.NewMeshMetrics()
	prom := dashboards.StartPrometheus(t, map[string][]string{"reviews-client": {mesh.Serve(t)}}, time.Second)

	nodeID := "sidecar~" + clientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+reviewsHost+":"+itoa(reviewsPort), xdsBootstrap(s.istiod.GRPCAddr, nodeID, cluster, "r1", "z1"))
	client := &reviewsClient{cc: cc, mesh: mesh}

	ctl := &canary.Controller{Istio: ic, Namespace: "default"}
	routeName := fmt.Sprintf("outbound|%d||%s", reviewsPort, reviewsHost) // grpcgen names routes like clusters
	subsetCluster := func(subset string) string {
		return fmt.Sprintf("outbound|%d|%s|%s", reviewsPort, subset, reviewsHost)
	}
	expect := func(split canary.Split, want map[string]float64) {
		t.Helper()
		wantRoute := map[string]uint32{}
		if split.Stable > 0 {
			wantRoute[subsetCluster("stable")] = uint32(split.Stable)
		}
		if split.Canary > 0 {
			wantRoute[subsetCluster("canary")] = uint32(split.Canary)
		}
		start := time.Now()
		waitRouteWeights(ctx, t, s.istiod.GRPCAddr, nodeID, cluster, routeName, wantRoute)
		client.call(ctx, 50, nil) // let the client's own stream catch up
		t.Logf("istiod serves %s %v (%v after the write)", split, wantRoute, time.Since(start).Round(time.Millisecond))
		// 2,500 RPCs: grpc-go picks a weighted cluster at random per RPC,
		// so a 50/50 share has σ = 1 percentage point and ± 5 is 5σ (with
		// 1,000 it was 3.2σ, and one run in a few hundred failed).
		const n = 2500
		got := client.call(ctx, n, nil)
		for v, share := range want {
			pct := 100 * float64(got[v]) / n
			if pct < 100*share-5 || pct > 100*share+5 {
				t.Fatalf("split %s: %s answered %.1f%% of %d RPCs, want %.0f%% ± 5 (all: %v)", split, v, pct, n, 100*share, got)
			}
		}
		t.Logf("split %s: %d RPCs answered %v", split, n, got)
	}

	// 1. Start: 90/10, then a step to 50/50, then promote.
	st, err := ctl.Start(ctx, canary.StartOptions{
		Service:      reviewsService,
		StableLabels: map[string]string{"version": "v1"},
		CanaryLabels: map[string]string{"version": "v2"},
		Steps:        []int32{10, 50, 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	expect(st.Split, map[string]float64{"v1": 0.9, "v2": 0.1})
	if st, err = ctl.Step(ctx, reviewsService, false); err != nil {
		t.Fatal(err)
	}
	expect(st.Split, map[string]float64{"v1": 0.5, "v2": 0.5})
	// The user's header route still sends x-debug traffic to v1 only.
	if got := client.call(ctx, 100, metadata.Pairs("x-debug", "1")); got["v1"] != 100 {
		t.Fatalf("user route x-debug=1 → subset debug (v1): got %v, want all 100 on v1", got)
	}
	checkUserRoutingKept(ctx, t, ic)
	if st, err = ctl.Promote(ctx, reviewsService); err != nil {
		t.Fatal(err)
	}
	expect(st.Split, map[string]float64{"v2": 1})
	if st.Phase != canary.PhasePromoted {
		t.Fatalf("phase after promote: %s", st.Phase)
	}

	// 2. A canary of v3, whose servers fail every RPC, with a gate. Traffic
	// runs in the background while the schedule steps; the gate must roll
	// the canary back to v2.
	st, err = ctl.Start(ctx, canary.StartOptions{
		Service:      reviewsService,
		StableLabels: map[string]string{"version": "v2"},
		CanaryLabels: map[string]string{"version": "v3"},
		Steps:        []int32{20, 50, 100},
		Gate: &canary.Gate{
			PrometheusURL:  prom.URL,
			Selector:       `destination_service="` + reviewsHost + `",destination_version="v3"`,
			Window:         canary.Duration(20 * time.Second),
			MinSuccessRate: 0.95,
			MinRequests:    20,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	var during map[string]int
	go func() {
		defer wg.Done()
		during = map[string]int{}
		for bg.Err() == nil {
			for k, n := range client.call(bg, 20, nil) {
				during[k] += n
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	start := time.Now()
	final, err := ctl.Run(ctx, reviewsService, 2*time.Second, func(s canary.State) {
		r := s.LastReading
		if r == nil {
			t.Logf("gate: %s %s", s.Split, s.Phase)
			return
		}
		t.Logf("gate after %v: %s %s, %s requests=%.0f success=%.3f (%s)", time.Since(start).Round(time.Millisecond), s.Split, s.Phase, r.Verdict, r.Requests, r.SuccessRate, r.Reason)
	})
	stopBG()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if final.Phase != canary.PhaseRolledBack || !strings.Contains(final.Message, "success rate") {
		t.Fatalf("failing canary: phase %s (%s), want RolledBack by the gate's success rate", final.Phase, final.Message)
	}
	t.Logf("rolled back %v after start: %s; background RPCs meanwhile: %v", time.Since(start).Round(time.Millisecond), final.Message, during)
	if during["v3"] == 0 {
		t.Fatalf("v3 never got traffic before the rollback: %v", during)
	}
	expect(final.Split, map[string]float64{"v2": 1})
	checkUserRoutingKept(ctx, t, ic)

	stat, err := ctl.Status(ctx, reviewsService)
	if err != nil {
		t.Fatal(err)
	}
	if stat.Live == nil || *stat.Live != (canary.Split{Stable: 100}) || stat.Reading == nil {
		t.Fatalf("status after rollback: live %v, reading %v", stat.Live, stat.Reading)
	}
	t.Logf("status: %s %s, gate reads %s requests=%.0f success=%.3f", stat.Split, stat.Phase, stat.Reading.Verdict, stat.Reading.Requests, stat.Reading.SuccessRate)
}

// createReviews creates the reviews Service, one Pod per version (labels
// app=reviews, version=vN) and the EndpointSlice.
func createReviews(ctx context.Context, t *testing.T, s *stack) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: reviewsService, Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": reviewsService}, Ports: []corev1.ServicePort{{
			Name: "grpc", Port: reviewsPort, Protocol: corev1.ProtocolTCP, AppProtocol: ptr("grpc"),
		}}},
	}
	mustCreate(t, "service default/reviews", func() error {
		_, err := s.kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		return err
	})
	w := workloads[0]
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: reviewsService + "-1", Namespace: "default", Labels: map[string]string{
			discoveryv1.LabelServiceName: reviewsService, discoveryv1.LabelManagedBy: "meshfleet-e2e",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(reviewsPort)), Protocol: ptr(corev1.ProtocolTCP), AppProtocol: ptr("grpc")}},
	}
	for _, v := range reviewsVersions {
		name := reviewsService + "-" + v.name
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": reviewsService, "version": v.name}},
			Spec: corev1.PodSpec{NodeName: w.node, Containers: []corev1.Container{{
				Name: "reviews", Image: "reviews", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: reviewsPort}},
			}}},
		}
		mustCreate(t, "pod default/"+name, func() error {
			created, err := s.kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			created.Status = corev1.PodStatus{
				Phase: corev1.PodRunning, PodIP: v.addr.String(), PodIPs: []corev1.PodIP{{IP: v.addr.String()}}, HostIP: "127.0.0.1",
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			}
			_, err = s.kube.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{})
			return err
		})
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{v.addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			NodeName:   ptr(w.node), Zone: ptr(w.zone),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: name},
		})
	}
	mustCreate(t, "endpointslice default/reviews-1", func() error {
		_, err := s.kube.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
		return err
	})
}

// userTrafficPolicy is the user's locality policy on reviews, which the
// canary must keep.
func userTrafficPolicy() *networkingv1alpha3.TrafficPolicy {
	return &networkingv1alpha3.TrafficPolicy{
		OutlierDetection: &networkingv1alpha3.OutlierDetection{Interval: durationpb.New(time.Second), BaseEjectionTime: durationpb.New(30 * time.Second)},
		LoadBalancer: &networkingv1alpha3.LoadBalancerSettings{LocalityLbSetting: &networkingv1alpha3.LocalityLoadBalancerSetting{
			Failover: []*networkingv1alpha3.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2"}},
		}},
	}
}

// createUserRouting creates what a user had before any canary: a
// DestinationRule with a locality policy and a "debug" subset (v1), and a
// VirtualService that sends x-debug: 1 requests to it.
func createUserRouting(ctx context.Context, t *testing.T, ic istioclient.Interface) {
	t.Helper()
	dr := &clientnetworkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "reviews-user", Namespace: "default"}}
	dr.Spec.Host = reviewsService
	dr.Spec.TrafficPolicy = userTrafficPolicy()
	dr.Spec.Subsets = []*networkingv1alpha3.Subset{{Name: "debug", Labels: map[string]string{"version": "v1"}}}
	mustCreate(t, "DestinationRule default/reviews-user", func() error {
		_, err := ic.NetworkingV1().DestinationRules("default").Create(ctx, dr, metav1.CreateOptions{})
		return err
	})
	vs := &clientnetworkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews-user", Namespace: "default"}}
	vs.Spec.Hosts = []string{reviewsService}
	vs.Spec.Http = []*networkingv1alpha3.HTTPRoute{{
		Name:  "debug",
		Match: []*networkingv1alpha3.HTTPMatchRequest{{Headers: map[string]*networkingv1alpha3.StringMatch{"x-debug": {MatchType: &networkingv1alpha3.StringMatch_Exact{Exact: "1"}}}}},
		Route: []*networkingv1alpha3.HTTPRouteDestination{{Destination: &networkingv1alpha3.Destination{Host: reviewsService, Subset: "debug"}}},
	}}
	mustCreate(t, "VirtualService default/reviews-user", func() error {
		_, err := ic.NetworkingV1().VirtualServices("default").Create(ctx, vs, metav1.CreateOptions{})
		return err
	})
}

// checkUserRoutingKept checks that the canary edited the user's objects
// without losing their route, subset or traffic policy.
func checkUserRoutingKept(ctx context.Context, t *testing.T, ic istioclient.Interface) {
	t.Helper()
	dr, err := ic.NetworkingV1().DestinationRules("default").Get(ctx, "reviews-user", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dr.Spec.TrafficPolicy; got.GetLoadBalancer().GetLocalityLbSetting().GetFailover()[0].GetTo() != "r2" || got.GetOutlierDetection() == nil {
		t.Fatalf("DestinationRule default/reviews-user lost its locality policy: %v", got)
	}
	var subsets []string
	for _, s := range dr.Spec.Subsets {
		subsets = append(subsets, s.Name+"="+s.Labels["version"])
	}
	if len(dr.Spec.Subsets) != 3 || dr.Spec.Subsets[0].Name != "debug" {
		t.Fatalf("DestinationRule default/reviews-user subsets %v, want debug plus stable and canary", subsets)
	}
	vs, err := ic.NetworkingV1().VirtualServices("default").Get(ctx, "reviews-user", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Spec.Http) != 2 || vs.Spec.Http[0].Name != "debug" || vs.Spec.Http[0].Route[0].Destination.Subset != "debug" {
		t.Fatalf("VirtualService default/reviews-user lost the user's debug route: %v", vs.Spec.Http)
	}
	t.Logf("user's DestinationRule (subsets %v, locality failover r1→r2, outlier detection) and debug route intact", subsets)
}

// versionServer answers health checks; a failing one answers every RPC
// with Internal.
type versionServer struct {
	healthpb.UnimplementedHealthServer
	fail bool
}

func (s *versionServer) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if s.fail {
		return nil, status.Error(codes.Internal, "broken canary")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func startVersionServer(t *testing.T, v version) {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(v.addr, reviewsPort).String())
	if err != nil {
		t.Fatalf("listening on %s:%d: %v", v.addr, reviewsPort, err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, &versionServer{fail: v.fail})
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
}

// reviewsClient calls reviews and records each RPC as Istio's sidecar
// would report it.
type reviewsClient struct {
	cc   *grpc.ClientConn
	mesh *dashboards.MeshMetrics
}

// call makes n RPCs and counts them by the version that answered (errors
// included: a failing version still answers); RPCs that reached no server
// count under "error: …".
func (c *reviewsClient) call(ctx context.Context, n int, md metadata.MD) map[string]int {
	counts := map[string]int{}
	hc := healthpb.NewHealthClient(c.cc)
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	for range n {
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		elapsed := time.Since(start)
		cancel()
		v := versionAt(p.Addr)
		if v == "" {
			if ctx.Err() == nil {
				counts[fmt.Sprintf("error: %v", status.Code(err))]++
			}
			continue
		}
		counts[v]++
		c.mesh.Observe(dashboards.Request{
			SourceWorkload: "reviews-client", SourceNamespace: "default", SourceCluster: "primary",
			Service: reviewsHost, ServiceName: reviewsService, ServiceNamespace: "default",
			DestWorkload: reviewsService + "-" + v, DestNamespace: "default", DestVersion: v, DestCluster: "primary",
			GRPCStatus: int(status.Code(err)), Duration: elapsed,
		})
	}
	return counts
}

func versionAt(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, _ := net.SplitHostPort(a.String())
	for _, v := range reviewsVersions {
		if v.addr.String() == host {
			return v.name
		}
	}
	return ""
}
