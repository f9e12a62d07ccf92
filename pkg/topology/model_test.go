package topology

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeLocality(t *testing.T) {
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   Locality
		label  string
	}{
		{"ga", map[string]string{LabelRegion: "r1", LabelZone: "z1"}, Locality{"r1", "z1", ""}, "r1/z1/"},
		{"legacy", map[string]string{LabelRegionLegacy: "r1", LabelZoneLegacy: "z1"}, Locality{"r1", "z1", ""}, "r1/z1/"},
		{"ga wins per key", map[string]string{LabelRegion: "r1", LabelRegionLegacy: "old", LabelZoneLegacy: "z9"}, Locality{"r1", "z9", ""}, "r1/z9/"},
		{"empty ga falls back", map[string]string{LabelRegion: "", LabelRegionLegacy: "r2"}, Locality{Region: "r2"}, "r2//"},
		{"subzone", map[string]string{LabelRegion: "r1", LabelZone: "z1", LabelSubzone: "s1"}, Locality{"r1", "z1", "s1"}, "r1/z1/s1"},
		{"subzone only", map[string]string{LabelSubzone: "s1"}, Locality{Subzone: "s1"}, "//s1"},
		{"none", nil, Locality{}, ""},
	} {
		if got := NodeLocalityLabel(tt.labels); got != tt.label {
			t.Errorf("%s: NodeLocalityLabel = %q, want %q", tt.name, got, tt.label)
		}
		if got := NodeLocality(tt.labels); got != tt.want {
			t.Errorf("%s: NodeLocality = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestEndpointLocality follows istiod's getPodLocality, GetLocalityLabel,
// SanitizeLocalityLabel and SplitLocalityLabel case by case.
func TestEndpointLocality(t *testing.T) {
	node := map[string]string{LabelRegion: "r1", LabelZone: "z1"}
	for _, tt := range []struct {
		name      string
		pod       map[string]string
		nodeKnown bool
		want      Locality
		label     string
		source    string
	}{
		{"node", nil, true, Locality{"r1", "z1", ""}, "r1/z1/", SourceNode},
		{"pod label", map[string]string{LabelIstioLocality: "r2.z2.s2"}, true, Locality{"r2", "z2", "s2"}, "r2/z2/s2", SourcePodLabel},
		{"pod label without subzone", map[string]string{LabelIstioLocality: "r2.z2"}, true, Locality{"r2", "z2", ""}, "r2/z2", SourcePodLabel},
		{"legacy pod label", map[string]string{LabelIstioLocalityLegacy: "r3.z3"}, true, Locality{"r3", "z3", ""}, "r3/z3", SourcePodLabelLegacy},
		{"new label wins over legacy", map[string]string{LabelIstioLocality: "r2.z2", LabelIstioLocalityLegacy: "r3.z3"}, true, Locality{"r2", "z2", ""}, "r2/z2", SourcePodLabel},
		// GetLocalityLabel returns the first key present, even empty; an
		// empty value then sends getPodLocality to the Node, never to the
		// legacy label.
		{"empty new label hides legacy", map[string]string{LabelIstioLocality: "", LabelIstioLocalityLegacy: "r3.z3"}, true, Locality{"r1", "z1", ""}, "r1/z1/", SourceNode},
		{"slashes kept", map[string]string{LabelIstioLocalityLegacy: "r4/z4.a/s4"}, true, Locality{"r4", "z4.a", "s4"}, "r4/z4.a/s4", SourcePodLabelLegacy},
		{"every dot is a separator, extra parts dropped", map[string]string{LabelIstioLocality: "r5.z5.s5.x"}, true, Locality{"r5", "z5", "s5"}, "r5/z5/s5/x", SourcePodLabel},
		{"pod label without node", map[string]string{LabelIstioLocality: "r2"}, false, Locality{Region: "r2"}, "r2", SourcePodLabel},
		{"no node, no label", nil, false, Locality{}, "", ""},
	} {
		l, label, source := EndpointLocality(tt.pod, node, tt.nodeKnown)
		if l != tt.want || label != tt.label || source != tt.source {
			t.Errorf("%s: EndpointLocality = %+v %q %q, want %+v %q %q", tt.name, l, label, source, tt.want, tt.label, tt.source)
		}
	}
}

func TestPodLocality(t *testing.T) {
	if l, ok := PodLocality(map[string]string{LabelIstioLocality: "r1.z1.s1"}); !ok || l != (Locality{"r1", "z1", "s1"}) {
		t.Errorf("PodLocality(r1.z1.s1) = %+v, %v", l, ok)
	}
	if l, ok := PodLocality(map[string]string{LabelIstioLocalityLegacy: "r1"}); !ok || l != (Locality{Region: "r1"}) {
		t.Errorf("PodLocality(istio-locality r1) = %+v, %v", l, ok)
	}
	if _, ok := PodLocality(nil); ok {
		t.Error("PodLocality(nil) ok = true")
	}
}

func TestDuplicateLocalities(t *testing.T) {
	svc := Service{Endpoints: []EndpointGroup{
		{Cluster: "c1", Locality: Locality{"r1", "z1", ""}, Label: "r1/z1/", Source: SourceNode, Ready: 1},
		{Cluster: "c2", Locality: Locality{"r1", "z1", ""}, Label: "r1/z1", Source: SourcePodLabelLegacy, NotReady: 1},
		{Cluster: "c2", Locality: Locality{"r1", "z1", ""}, Label: "r1/z1/", Source: SourceNode, Ready: 2},
		// The same string from two clusters is one locality to istiod.
		{Cluster: "c1", Locality: Locality{"r2", "z2", "s"}, Label: "r2/z2/s", Source: SourceNode, Ready: 1},
		{Cluster: "c2", Locality: Locality{"r2", "z2", "s"}, Label: "r2/z2/s", Source: SourcePodLabel, Ready: 1},
		// No endpoints: nothing is sent.
		{Cluster: "c1", Locality: Locality{"r3", "", ""}, Label: "r3", Source: SourcePodLabel},
		{Cluster: "c1", Locality: Locality{"r3", "", ""}, Label: "r3//", Source: SourceNode, Ready: 1},
	}}
	want := []DuplicateLocality{{Locality: Locality{"r1", "z1", ""}, Labels: []string{
		`"r1/z1" (pod label istio-locality in c2)`,
		`"r1/z1/" (node labels in c1, node labels in c2)`,
	}}}
	if d := cmp.Diff(want, svc.DuplicateLocalities()); d != "" {
		t.Errorf("DuplicateLocalities (-want +got):\n%s", d)
	}
}

// TestTrafficDistributionCopy: istiod reads spec.trafficDistribution, then
// the annotation, on the config cluster's copy of a Service only.
func TestTrafficDistributionCopy(t *testing.T) {
	prefer, unknown := corev1.ServiceTrafficDistributionPreferClose, "SomethingNew"
	namespaces := map[string]map[string]string{"ns": {AnnotationTrafficDistribution: "PreferSameNode"}}
	build := func(name string, svcs ...*cachedService) *part {
		return buildPart(clusterObjects{name: name, domain: "cluster.local", services: svcs})
	}
	primary := buildPart(clusterObjects{name: "primary", domain: "cluster.local", services: []*cachedService{
		service("other", "plain", nil),
		service("other", "annotated", map[string]string{AnnotationTrafficDistribution: "preferclose"}),
		service("other", "unknown-spec", map[string]string{AnnotationTrafficDistribution: "PreferSameNode"}, func(s *corev1.Service) { s.Spec.TrafficDistribution = &unknown }),
		// The namespace's annotation applies when the Service sets none;
		// a Service annotation with a value istiod does not know hides it.
		service("ns", "from-namespace", nil),
		service("ns", "unknown-annotation", map[string]string{AnnotationTrafficDistribution: "Nearby"}),
	}, namespace: func(n string) map[string]string { return namespaces[n] }})
	remote := build("a-remote",
		service("other", "plain", nil, func(s *corev1.Service) { s.Spec.TrafficDistribution = &prefer }),
		service("other", "only-remote", nil, func(s *corev1.Service) { s.Spec.TrafficDistribution = &prefer }),
	)
	got := merge([]*part{remote, primary}, "primary") // name order: a-remote first
	want := map[string][3]any{
		"plain":              {"", "", []string{"a-remote's copy sets spec.trafficDistribution PreferClose; istiod uses primary's copy"}},
		"annotated":          {"PreferClose", "annotation networking.istio.io/traffic-distribution of primary's copy", []string(nil)},
		"unknown-spec":       {"PreferSameNode", "annotation networking.istio.io/traffic-distribution of primary's copy", []string(nil)},
		"only-remote":        {"PreferClose", "spec.trafficDistribution of a-remote's copy", []string(nil)},
		"from-namespace":     {"PreferSameNode", "annotation networking.istio.io/traffic-distribution on namespace ns of primary's copy", []string(nil)},
		"unknown-annotation": {"", "", []string(nil)},
	}
	if got.ConfigCluster != "primary" {
		t.Errorf("ConfigCluster = %q", got.ConfigCluster)
	}
	for _, s := range got.Services {
		w := want[s.Name]
		if s.TrafficDistribution != w[0] || s.TrafficDistributionFrom != w[1] || !cmp.Equal(s.IgnoredTrafficDistribution, w[2]) {
			t.Errorf("%s: got %q %q %q, want %q %q %q", s.Name, s.TrafficDistribution, s.TrafficDistributionFrom, s.IgnoredTrafficDistribution, w[0], w[1], w[2])
		}
	}
	if got.Clusters[0].Name != "a-remote" {
		t.Errorf("clusters not sorted by name: %v", got.Clusters)
	}
}

// TestLegacyPodLabel: an endpoint whose Pod carries istio-locality is where
// the label says, not where its Node is.
func TestLegacyPodLabel(t *testing.T) {
	pods := map[string]*metav1.PartialObjectMetadata{"ns/p": {ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelIstioLocalityLegacy: "us-east-2.use2-az1"}}}}
	p := buildPart(clusterObjects{name: "c", domain: "cluster.local",
		nodes:    []*corev1.Node{node("n", map[string]string{LabelRegion: "us-east-1", LabelZone: "use1-az1"})},
		services: []*cachedService{service("ns", "s", nil)},
		slices:   []*cachedSlice{slice("ns", "s", "s-1", endpoint{node: "n", pod: "p", ready: true})},
		pod:      func(k string) (*metav1.PartialObjectMetadata, bool) { m, ok := pods[k]; return m, ok },
	})
	want := []EndpointGroup{{Cluster: "c", Locality: Locality{"us-east-2", "use2-az1", ""}, Label: "us-east-2/use2-az1", Source: SourcePodLabelLegacy, Ready: 1}}
	if d := cmp.Diff(want, p.services["ns/s"].Endpoints); d != "" {
		t.Errorf("endpoints (-want +got):\n%s", d)
	}
}
