package topology

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Label keys that carry locality, in the order istiod reads them.
const (
	// LabelIstioLocality on a Pod wins over everything ("region.zone.subzone").
	LabelIstioLocality = "topology.istio.io/locality"
	// LabelIstioLocalityLegacy on a Pod is read when the first is absent
	// (istiod's model.LocalityLabel, kept for backwards compatibility).
	LabelIstioLocalityLegacy = "istio-locality"
	LabelRegion              = "topology.kubernetes.io/region"
	LabelZone                = "topology.kubernetes.io/zone"
	LabelRegionLegacy        = "failure-domain.beta.kubernetes.io/region"
	LabelZoneLegacy          = "failure-domain.beta.kubernetes.io/zone"
	LabelSubzone             = "topology.istio.io/subzone"
)

// AnnotationTrafficDistribution on a Service asks istiod for a traffic
// distribution when spec.trafficDistribution does not (istiod reads it
// after the field; annotation.NetworkingTrafficDistribution).
const AnnotationTrafficDistribution = "networking.istio.io/traffic-distribution"

// Where an endpoint's locality came from (EndpointGroup.Source).
const (
	SourcePodLabel       = "pod label " + LabelIstioLocality
	SourcePodLabelLegacy = "pod label " + LabelIstioLocalityLegacy
	SourceNode           = "node labels"
)

// The functions below mirror istiod (istio.io/istio, the version pinned in
// tests/tools/istio) so that meshfleet places every endpoint where istiod
// does:
//
//	pilot/pkg/serviceregistry/kube/controller/controller.go  (*Controller).getPodLocality
//	pkg/model/proxy.go                                        GetLocalityLabel, SanitizeLocalityLabel
//	pilot/pkg/serviceregistry/kube/controller/util.go         getLabelValue
//	pilot/pkg/serviceregistry/util/label/label.go             SplitLocalityLabel
//
// istiod keeps the locality of an endpoint as a string (model.Locality.Label)
// and groups the endpoints of an EDS response by that string
// (pilot/pkg/xds/endpoints/endpoint_builder.go): two strings that parse to
// the same region/zone/subzone ("r1/z1" from a pod label, "r1/z1/" from a
// node) become two LocalityLbEndpoints with the same locality. Hence
// EndpointLocality returns the string as well as the parsed locality.

// PodLocalityLabel returns the Pod's locality label as istiod's
// GetLocalityLabel reads it: topology.istio.io/locality if the key is
// present (even with an empty value, which then hides the legacy label),
// else istio-locality; ok is false when neither key is present.
func PodLocalityLabel(labels map[string]string) (value, source string, ok bool) {
	if v, ok := labels[LabelIstioLocality]; ok {
		return v, SourcePodLabel, true
	}
	if v, ok := labels[LabelIstioLocalityLegacy]; ok {
		return v, SourcePodLabelLegacy, true
	}
	return "", "", false
}

// SanitizeLocalityLabel is istiod's SanitizeLocalityLabel: a value with a
// "/" is kept as it is, else every "." becomes "/" (Kubernetes label values
// cannot hold "/").
func SanitizeLocalityLabel(v string) string {
	if v == "" || strings.Contains(v, "/") {
		return v
	}
	return strings.ReplaceAll(v, ".", "/")
}

// SplitLocalityLabel is istiod's SplitLocalityLabel: region, zone and
// subzone are the first three "/"-separated parts; more parts are dropped.
func SplitLocalityLabel(v string) Locality {
	if v == "" {
		return Locality{}
	}
	items := strings.Split(v, "/")
	l := Locality{Region: items[0]}
	if len(items) > 1 {
		l.Zone = items[1]
	}
	if len(items) > 2 {
		l.Subzone = items[2]
	}
	return l
}

// NodeLocalityLabel is the locality string istiod derives from a Node's
// labels (the second half of getPodLocality): region and zone from the
// topology.kubernetes.io keys, each falling back to its legacy
// failure-domain.beta.kubernetes.io key when empty (getLabelValue), the
// subzone from topology.istio.io/subzone, joined as "region/zone/subzone";
// "" when all three are empty.
func NodeLocalityLabel(labels map[string]string) string {
	region := labelValue(labels, LabelRegion, LabelRegionLegacy)
	zone := labelValue(labels, LabelZone, LabelZoneLegacy)
	subzone := labels[LabelSubzone]
	if region == "" && zone == "" && subzone == "" {
		return ""
	}
	return region + "/" + zone + "/" + subzone
}

// labelValue is istiod's getLabelValue: key if not empty, else fallback.
func labelValue(labels map[string]string, key, fallback string) string {
	if v := labels[key]; v != "" {
		return v
	}
	return labels[fallback]
}

// NodeLocality derives a Node's locality from its labels, as istiod does.
func NodeLocality(labels map[string]string) Locality {
	return SplitLocalityLabel(NodeLocalityLabel(labels))
}

// PodLocality parses a Pod's locality label (topology.istio.io/locality,
// else istio-locality) as istiod does; ok is false when the Pod has none
// that istiod would use (absent or empty: istiod then asks the Node).
func PodLocality(labels map[string]string) (Locality, bool) {
	v, _, ok := PodLocalityLabel(labels)
	if !ok || v == "" {
		return Locality{}, false
	}
	return SplitLocalityLabel(SanitizeLocalityLabel(v)), true
}

// EndpointLocality is istiod's getPodLocality: the Pod's locality label
// (sanitized) when it has a non-empty one, else its Node's labels; without
// a known Node (or Pod) the endpoint has no locality. label is the string
// istiod keeps (model.Locality.Label) and source says where it came from
// ("" without a locality).
func EndpointLocality(podLabels map[string]string, nodeLabels map[string]string, nodeKnown bool) (l Locality, label, source string) {
	if v, src, ok := PodLocalityLabel(podLabels); ok && v != "" {
		label = SanitizeLocalityLabel(v)
		return SplitLocalityLabel(label), label, src
	}
	if !nodeKnown {
		return Locality{}, "", ""
	}
	label = NodeLocalityLabel(nodeLabels)
	if label == "" {
		return Locality{}, "", ""
	}
	return SplitLocalityLabel(label), label, SourceNode
}

// DuplicateLocality is a locality that istiod would put twice into one EDS
// response for a Service: its endpoints carry locality strings that differ
// but parse to the same region/zone/subzone (a pod label "r1.z1" gives
// "r1/z1", a Node "r1/z1/"). istiod groups endpoints by the string
// (pilot/pkg/xds/endpoints/endpoint_builder.go, localityEpMap), so the
// response holds two LocalityLbEndpoints with one locality at one priority;
// grpc-go's xDS client rejects such a response (NACK: "duplicate locality"),
// and a proxyless gRPC client of the Service then has no endpoints. Envoy
// accepts it.
type DuplicateLocality struct {
	Locality Locality `json:"locality"`
	// Labels are the distinct locality strings, each with its source and
	// cluster, e.g. `"r1/z1" (pod label istio-locality in remote1)`.
	Labels []string `json:"labels"`
}

// DuplicateLocalities returns the localities of s that istiod would send
// twice, sorted; endpoints not ready count too (they become ready, and
// istiod sends them when the Service asks for unhealthy endpoints).
func (s Service) DuplicateLocalities() []DuplicateLocality {
	byLoc := map[Locality]map[string][]string{} // locality → label → "source in cluster"
	for _, e := range s.Endpoints {
		if e.Label == "" || e.Ready+e.NotReady == 0 {
			continue
		}
		if byLoc[e.Locality] == nil {
			byLoc[e.Locality] = map[string][]string{}
		}
		where := e.Source + " in " + e.Cluster
		if !slices.Contains(byLoc[e.Locality][e.Label], where) {
			byLoc[e.Locality][e.Label] = append(byLoc[e.Locality][e.Label], where)
		}
	}
	var out []DuplicateLocality
	for l, labels := range byLoc {
		if len(labels) < 2 {
			continue
		}
		d := DuplicateLocality{Locality: l}
		for label, wheres := range labels {
			d.Labels = append(d.Labels, fmt.Sprintf("%q (%s)", label, strings.Join(wheres, ", ")))
		}
		sort.Strings(d.Labels)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Locality.Compare(out[j].Locality) < 0 })
	return out
}
