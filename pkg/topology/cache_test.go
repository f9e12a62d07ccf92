package topology

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
)

func ptr[T any](v T) *T { return &v }

// TestTrimKeepsWhatTheTopologyReads builds a cluster's share of the
// Topology from objects as an API server returns them, every field set
// (labels, annotations, ports, status, conditions, hints, full target
// references), passed through the informers' transforms: it must be what
// the fields the topology reads say, however they are set (a ready
// condition unset counts as ready, several addresses per endpoint, a Pod
// in another namespace than its slice, a target that is no Pod, a slice's
// zone that istiod ignores, a node with no name given).
func TestTrimKeepsWhatTheTopologyReads(t *testing.T) {
	big := strings.Repeat("x", 4096)
	meta := func(ns, name string, labels, annotations map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, UID: "0b4f5c1e-0000-4000-8000-000000000001", ResourceVersion: "42", Generation: 3,
			Labels: labels, Annotations: annotations, CreationTimestamp: metav1.Now(), Finalizers: []string{"example.com/f"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}}
	}
	trim := func(f func(any) (any, error), obj any) any {
		out, err := f(obj)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	nodes := []*corev1.Node{
		{ObjectMeta: meta("", "n1", map[string]string{LabelRegionLegacy: "r1", LabelZone: "z1", LabelSubzone: "s1", "kubernetes.io/hostname": "n1"}, map[string]string{"node.alpha.kubernetes.io/ttl": "0"}),
			Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
				Images: []corev1.ContainerImage{{Names: []string{big}, SizeBytes: 1 << 30}}, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
		{ObjectMeta: meta("", "n2", map[string]string{LabelRegion: "r2", LabelRegionLegacy: "ignored", LabelZoneLegacy: "z2"}, nil)},
	}
	services := []*corev1.Service{
		{ObjectMeta: meta("shop", "cart", map[string]string{"app": "cart"}, map[string]string{
			"meshfleet.io/failover": "r2", "meshfleet.io/locality": "on", "other.io/x": "y", AnnotationTrafficDistribution: "preferclose",
			"kubectl.kubernetes.io/last-applied-configuration": big}),
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.0.0.1", ClusterIPs: []string{"10.0.0.1"}, Selector: map[string]string{"app": "cart"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		{ObjectMeta: meta("shop", "spec-td", nil, map[string]string{AnnotationTrafficDistribution: "PreferSameNode"}),
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, TrafficDistribution: ptr(corev1.ServiceTrafficDistributionPreferSameZone)}},
		{ObjectMeta: meta("shop", "from-ns", nil, nil), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, TrafficDistribution: ptr("Unknown")}},
		{ObjectMeta: meta("shop", "ext", nil, map[string]string{"meshfleet.io/failover": "r2"}), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}},
	}
	endpoint := func(addrs []string, ready *bool, node *string, ref *corev1.ObjectReference) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: addrs, NodeName: node, TargetRef: ref, Zone: ptr("z-from-slice"), Hostname: ptr("h"),
			Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: ptr(true), Terminating: ptr(false)},
			Hints:      &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z1"}}}}
	}
	podRef := func(ns, name string) *corev1.ObjectReference {
		return &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name, UID: "0b4f5c1e-0000-4000-8000-000000000002", ResourceVersion: "7", APIVersion: "v1"}
	}
	slices := []*discoveryv1.EndpointSlice{
		{ObjectMeta: meta("shop", "cart-abcde", map[string]string{discoveryv1.LabelServiceName: "cart", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}, nil),
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
			Endpoints: []discoveryv1.Endpoint{
				endpoint([]string{"10.1.0.1", "10.1.0.2"}, nil, ptr("n1"), podRef("", "cart-a")),    // ready unset: ready, 2 addresses
				endpoint([]string{"10.1.0.3"}, ptr(false), ptr("n1"), podRef("", "cart-b")),         // not ready
				endpoint([]string{"10.1.0.4"}, ptr(true), ptr("n2"), podRef("elsewhere", "cart-c")), // the Pod's label wins
				endpoint([]string{"10.1.0.5"}, ptr(true), nil, podRef("", "cart-d")),                // no node: no locality
				endpoint([]string{"10.1.0.6"}, ptr(true), ptr("n2"), &corev1.ObjectReference{Kind: "VirtualMachine", Name: "vm"}),
			}},
		{ObjectMeta: meta("shop", "from-ns-1", map[string]string{discoveryv1.LabelServiceName: "from-ns"}, nil),
			Endpoints: []discoveryv1.Endpoint{endpoint([]string{"10.1.0.7"}, ptr(true), ptr("n2"), nil)}},
		{ObjectMeta: meta("shop", "orphan", map[string]string{"app": "x"}, nil), // names no Service
			Endpoints: []discoveryv1.Endpoint{endpoint([]string{"10.1.0.8"}, ptr(true), ptr("n2"), nil)}},
	}
	pods := []*metav1.PartialObjectMetadata{
		{ObjectMeta: meta("elsewhere", "cart-c", map[string]string{LabelIstioLocality: "r9.z9", "app": "cart", "pod-template-hash": "abc"}, map[string]string{"sidecar.istio.io/status": big})},
		{ObjectMeta: meta("shop", "cart-a", map[string]string{"app": "cart"}, nil)},
		{ObjectMeta: meta("shop", "cart-b", map[string]string{LabelIstioLocality: "", LabelIstioLocalityLegacy: "r8.z8"}, nil)}, // empty: the node's
	}
	namespaces := []*metav1.PartialObjectMetadata{
		{ObjectMeta: meta("", "shop", map[string]string{"kubernetes.io/metadata.name": "shop"}, map[string]string{AnnotationTrafficDistribution: "PreferClose", "other": big})},
	}

	in := clusterObjects{name: "c1", domain: "cluster.local"}
	for _, n := range nodes {
		in.nodes = append(in.nodes, trim(trimNode, n).(*corev1.Node))
	}
	for _, s := range services {
		in.services = append(in.services, trim(trimService, s).(*cachedService))
	}
	for _, es := range slices {
		in.slices = append(in.slices, trim(trimSlice, es).(*cachedSlice))
	}
	podsByKey := map[string]*metav1.PartialObjectMetadata{}
	for _, p := range pods {
		podsByKey[p.Namespace+"/"+p.Name] = trim(trimPod, p).(*metav1.PartialObjectMetadata)
	}
	nsAnnotations := map[string]map[string]string{}
	for _, n := range namespaces {
		nsAnnotations[n.Name] = trim(trimNamespace, n).(*metav1.PartialObjectMetadata).Annotations
	}
	in.pod = func(k string) (*metav1.PartialObjectMetadata, bool) { p, ok := podsByKey[k]; return p, ok }
	in.namespace = func(n string) map[string]string { return nsAnnotations[n] }
	p := buildPart(in)

	want := &Topology{
		Clusters: []Cluster{{Name: "c1", Nodes: []Node{{Name: "n1", Locality: Locality{"r1", "z1", "s1"}}, {Name: "n2", Locality: Locality{"r2", "z2", ""}}}}},
		Services: []Service{
			{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.cluster.local",
				Annotations:         map[string]string{"meshfleet.io/failover": "r2", "meshfleet.io/locality": "on"},
				TrafficDistribution: "PreferClose", TrafficDistributionFrom: "annotation " + AnnotationTrafficDistribution + " of c1's copy",
				Endpoints: []EndpointGroup{
					{Cluster: "c1", NotReady: 0, Ready: 1}, // cart-d: no node
					{Cluster: "c1", Locality: Locality{"r1", "z1", "s1"}, Label: "r1/z1/s1", Source: SourceNode, Ready: 2, NotReady: 1},
					{Cluster: "c1", Locality: Locality{"r2", "z2", ""}, Label: "r2/z2/", Source: SourceNode, Ready: 1}, // the VirtualMachine
					{Cluster: "c1", Locality: Locality{"r9", "z9", ""}, Label: "r9/z9", Source: SourcePodLabel, Ready: 1},
				}},
			{Namespace: "shop", Name: "from-ns", Hostname: "from-ns.shop.svc.cluster.local",
				TrafficDistribution: "PreferClose", TrafficDistributionFrom: "annotation " + AnnotationTrafficDistribution + " on namespace shop of c1's copy",
				Endpoints: []EndpointGroup{{Cluster: "c1", Locality: Locality{"r2", "z2", ""}, Label: "r2/z2/", Source: SourceNode, Ready: 1}}},
			{Namespace: "shop", Name: "spec-td", Hostname: "spec-td.shop.svc.cluster.local",
				TrafficDistribution: "PreferSameZone", TrafficDistributionFrom: "spec.trafficDistribution of c1's copy"},
		},
	}
	if d := cmp.Diff(want, merge([]*part{p}, "")); d != "" {
		t.Errorf("topology from trimmed objects (-want +got):\n%s", d)
	}
	// A Pod's locality label change must rebuild the Services naming it.
	wantPods := map[string]map[string]bool{"elsewhere/cart-c": {"shop/cart": true}, "shop/cart-a": {"shop/cart": true}, "shop/cart-b": {"shop/cart": true}, "shop/cart-d": {"shop/cart": true}}
	if d := cmp.Diff(wantPods, p.pods); d != "" {
		t.Errorf("Pods named by endpoints (-want +got):\n%s", d)
	}
}

// TestTrimmedObjectsInClientGoCache: client-go's cache keys the records by
// namespace/name and reads their resourceVersion (meta.Accessor); the
// transforms are idempotent (client-go may pass them what they returned);
// repeated strings share one copy.
func TestTrimmedObjectsInClientGoCache(t *testing.T) {
	svc, _ := trimService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", ResourceVersion: "5"}})
	es, _ := trimSlice(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: strings.Clone("shop"), Name: "cart-1", ResourceVersion: "6",
		Labels: map[string]string{discoveryv1.LabelServiceName: "cart"}}})
	for _, c := range []struct {
		obj      any
		trim     func(any) (any, error)
		key, ver string
	}{{svc, trimService, "shop/cart", "5"}, {es, trimSlice, "shop/cart-1", "6"}} {
		store := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
		if err := store.Add(c.obj); err != nil {
			t.Fatalf("%T: %v", c.obj, err)
		}
		if got, ok, _ := store.GetByKey(c.key); !ok || got != c.obj {
			t.Errorf("%T: not found under %s (keys %v)", c.obj, c.key, store.ListKeys())
		}
		if again, _ := c.trim(c.obj); again != c.obj {
			t.Errorf("%T: transform not idempotent", c.obj)
		}
		if m := c.obj.(metav1.ObjectMetaAccessor).GetObjectMeta(); m.GetResourceVersion() != c.ver {
			t.Errorf("%T: resourceVersion %q, want %q", c.obj, m.GetResourceVersion(), c.ver)
		}
	}
	if a, b := svc.(*cachedService).namespace, es.(*cachedSlice).namespace; unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("the namespace of two objects is held twice; want interned")
	}
}

// TestSliceIndexFollowsEvents feeds the EndpointSlices' handler adds,
// updates (one moving a slice to another Service) and deletes (one as a
// tombstone): the index holds what the events say and every Service
// concerned is marked changed.
func TestSliceIndexFollowsEvents(t *testing.T) {
	changes := 0
	w := &Watcher{opts: WatcherOptions{OnChange: func() { changes++ }}}
	cw := &clusterWatch{}
	h := w.sliceHandler(cw)
	a1, a2, b1 := slice("ns", "a", "a-1"), slice("ns", "a", "a-2"), slice("ns", "b", "b-1")
	h.OnAdd(a1, true)
	h.OnAdd(a2, true)
	h.OnAdd(b1, true)
	h.OnAdd(slice("ns", "", "no-service"), true)
	moved := slice("ns", "b", "a-2", endpoint{node: "n", ready: true})
	h.OnUpdate(a2, moved)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/a-1", Obj: a1})
	updated := slice("ns", "b", "b-1", endpoint{node: "n", ready: false})
	h.OnUpdate(b1, updated)

	if got := cw.slicesBySvc.of("ns/a"); len(got) != 0 {
		t.Errorf("Service a keeps %d slices, want none", len(got))
	}
	got := cw.slicesBySvc.of("ns/b")
	if len(got) != 2 || got[0] != moved || got[1] != updated {
		t.Errorf("Service b's slices = %v, want a-2 (moved) and b-1 (updated)", got)
	}
	if n := len(cw.slicesBySvc.all()); n != 2 {
		t.Errorf("all() = %d slices, want 2", n)
	}
	if want := map[string]bool{"ns/a": true, "ns/b": true}; !cmp.Equal(cw.dirty.services, want) {
		t.Errorf("marked %v, want %v", cw.dirty.services, want)
	}
	if changes != 7 {
		t.Errorf("OnChange called %d times, want 7", changes)
	}
}
