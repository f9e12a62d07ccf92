package topology

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// service is the cached record (trimService) of a Service.
func service(ns, name string, annotations map[string]string, mutate ...func(*corev1.Service)) *cachedService {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}}
	for _, m := range mutate {
		m(s)
	}
	out, _ := trimService(s)
	return out.(*cachedService)
}

// endpoint is one address on node (or in zone, when node is ""), with an
// optional Pod reference.
type endpoint struct {
	node, zone, pod string
	ready           bool
}

// slice is the cached record (trimSlice) of an EndpointSlice.
func slice(ns, svc, name string, eps ...endpoint) *cachedSlice {
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for i, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.18.9.%d", i+1)}, Conditions: discoveryv1.EndpointConditions{Ready: &e.ready}}
		if e.node != "" {
			ep.NodeName = &e.node
		}
		if e.zone != "" {
			ep.Zone = &e.zone
		}
		if e.pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.pod}
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	out, _ := trimSlice(es)
	return out.(*cachedSlice)
}

func TestBuildAndMerge(t *testing.T) {
	pods := map[string]*metav1.PartialObjectMetadata{
		"shop/cart-pinned": {ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelIstioLocality: "r9.z9.s9"}}},
	}
	c1 := clusterObjects{
		name: "c1", domain: "cluster.local",
		nodes: []*corev1.Node{
			node("b", map[string]string{LabelRegion: "r1", LabelZone: "z2"}),
			node("a", map[string]string{LabelRegionLegacy: "r1", LabelZoneLegacy: "z1"}),
		},
		services: []*cachedService{
			service("shop", "cart", nil),
			service("shop", "db", nil, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }),
			service("shop", "pay", map[string]string{"meshfleet.io/locality": "off", "other.io/x": "y"}),
		},
		slices: []*cachedSlice{
			slice("shop", "cart", "cart-1",
				endpoint{node: "a", ready: true}, endpoint{node: "a", ready: false},
				endpoint{node: "b", ready: true}, endpoint{node: "a", pod: "cart-pinned", ready: true}),
			slice("shop", "db", "db-1", endpoint{node: "a", ready: true}),     // ExternalName: ignored
			slice("shop", "gone", "gone-1", endpoint{node: "a", ready: true}), // no such Service here
			slice("shop", "pay", "pay-1", endpoint{zone: "z-from-slice", ready: true}),
		},
		rules: []*unstructured.Unstructured{
			{Object: map[string]any{"metadata": map[string]any{"namespace": "shop", "name": "mine"}, "spec": map[string]any{"host": "pay"}}},
			{Object: map[string]any{"metadata": map[string]any{"namespace": "shop", "name": "hostless"}, "spec": map[string]any{}}},
			// The locality server's own rule is no user rule.
			{Object: map[string]any{"metadata": map[string]any{"namespace": "istio-system", "name": "meshfleet-locality.cart.shop",
				"labels": map[string]any{LabelManagedBy: ManagedByLocality}}, "spec": map[string]any{"host": "cart.shop.svc.cluster.local"}}},
			// A MeshIngress rule, seen by the gateways only, is no user rule either.
			{Object: map[string]any{"metadata": map[string]any{"namespace": "istio-gateways", "name": "meshingress-shop-cart-shop",
				"labels": map[string]any{LabelManagedBy: ManagedByIngress}}, "spec": map[string]any{"host": "cart.shop.svc.cluster.local"}}},
		},
		pod: func(key string) (*metav1.PartialObjectMetadata, bool) { p, ok := pods[key]; return p, ok },
	}
	prefer := "PreferClose"
	c2 := clusterObjects{
		name: "c2", domain: "cluster.local",
		nodes: []*corev1.Node{node("c", map[string]string{LabelRegion: "r2", LabelZone: "z3"})},
		services: []*cachedService{
			service("shop", "cart", map[string]string{"meshfleet.io/failover": "r3"}, func(s *corev1.Service) { s.Spec.TrafficDistribution = &prefer }),
			service("shop", "pay", map[string]string{"meshfleet.io/locality": "on"}),
		},
		slices: []*cachedSlice{
			slice("shop", "cart", "cart-2", endpoint{node: "c", ready: true}),
		},
	}
	p1, p2 := buildPart(c1), buildPart(c2)
	got := merge([]*part{p1, p2}, "")

	want := &Topology{
		Clusters: []Cluster{
			{Name: "c1", Nodes: []Node{{Name: "a", Locality: Locality{Region: "r1", Zone: "z1"}}, {Name: "b", Locality: Locality{Region: "r1", Zone: "z2"}}}},
			{Name: "c2", Nodes: []Node{{Name: "c", Locality: Locality{Region: "r2", Zone: "z3"}}}},
		},
		Services: []Service{
			{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.cluster.local",
				// c1 sets no meshfleet annotation: c2's are taken. Its
				// trafficDistribution is not: istiod uses the first
				// cluster's copy (no config cluster given: c1, by name).
				Annotations:                map[string]string{"meshfleet.io/failover": "r3"},
				IgnoredTrafficDistribution: []string{"c2's copy sets spec.trafficDistribution PreferClose; istiod uses c1's copy"},
				Endpoints: []EndpointGroup{
					{Cluster: "c1", Locality: Locality{Region: "r1", Zone: "z1"}, Label: "r1/z1/", Source: SourceNode, Ready: 1, NotReady: 1},
					{Cluster: "c1", Locality: Locality{Region: "r1", Zone: "z2"}, Label: "r1/z2/", Source: SourceNode, Ready: 1},
					{Cluster: "c1", Locality: Locality{Region: "r9", Zone: "z9", Subzone: "s9"}, Label: "r9/z9/s9", Source: SourcePodLabel, Ready: 1}, // the Pod's label wins
					{Cluster: "c2", Locality: Locality{Region: "r2", Zone: "z3"}, Label: "r2/z3/", Source: SourceNode, Ready: 1},
				}},
			{Namespace: "shop", Name: "pay", Hostname: "pay.shop.svc.cluster.local",
				// c1 (first by name) sets one: its annotations win, c2's are ignored.
				Annotations: map[string]string{"meshfleet.io/locality": "off"},
				// No Pod, no Node: no locality (istiod ignores the slice's zone).
				Endpoints: []EndpointGroup{{Cluster: "c1", Ready: 1}}},
		},
		UserDestinationRules: []UserDestinationRule{{Cluster: "c1", Namespace: "shop", Name: "mine", Host: "pay", SubsetsOnly: true}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("merged topology (-want +got):\n%s", d)
	}

	// The Topology shares nothing with the cached parts: a consumer that
	// changes it cannot corrupt the next Snapshot.
	got.Services[0].Endpoints[0].Ready = 99
	got.Services[0].Annotations["meshfleet.io/failover"] = "changed"
	got.Clusters[0].Nodes[0].Name = "changed"
	if again := merge([]*part{p1, p2}, ""); !cmp.Equal(want, again) {
		t.Errorf("changing a merged topology changed the parts it came from:\n%s", cmp.Diff(want, again))
	}
}

// BenchmarkSnapshot is what a Snapshot costs at 1,000 services in each of 3
// clusters when one cluster changed (its part is rebuilt, the others are
// reused), when one Service did (Watcher.Changes) and when all did.
func BenchmarkSnapshot(b *testing.B) {
	objs := make([]clusterObjects, 3)
	for c := range objs {
		in := clusterObjects{name: fmt.Sprintf("c%d", c+1), domain: "cluster.local"}
		for z := range 2 {
			in.nodes = append(in.nodes, node(fmt.Sprintf("n%d", z), map[string]string{LabelRegion: fmt.Sprintf("r%d", c), LabelZone: fmt.Sprintf("z%d", z)}))
		}
		for i := range 1000 {
			name := fmt.Sprintf("svc-%04d", i)
			in.services = append(in.services, service("bench", name, nil))
			in.slices = append(in.slices, slice("bench", name, name+"-1", endpoint{node: "n0", ready: true}, endpoint{node: "n1", ready: true}))
		}
		objs[c] = in
	}
	parts := make([]*part, len(objs))
	for i, in := range objs {
		parts[i] = buildPart(in)
	}
	b.Run("one-cluster-changed", func(b *testing.B) {
		for b.Loop() {
			parts[2] = buildPart(objs[2])
			merge(parts, "")
		}
	})
	b.Run("one-service-changed", func(b *testing.B) {
		// What Watcher.Changes does for one Service (decision 64).
		keys := []string{"bench/svc-0000"}
		topo := merge(parts, "")
		for b.Loop() {
			updatePart(parts[2], objs[2], keys)
			topo = mergeKeys(topo, parts, keys)
		}
	})
	b.Run("all-changed", func(b *testing.B) {
		for b.Loop() {
			for i, in := range objs {
				parts[i] = buildPart(in)
			}
			merge(parts, "")
		}
	})
}
