package topology

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// clusterObjects are what one cluster's informer caches hold: the input of
// buildPart.
type clusterObjects struct {
	name string
	// domain is the cluster's DNS domain (service hostnames).
	domain   string
	nodes    []*corev1.Node
	services []*corev1.Service
	slices   []*discoveryv1.EndpointSlice
	rules    []*unstructured.Unstructured // users' DestinationRules
	// pod returns the metadata of the Pod namespace/name, if known.
	pod func(key string) (*metav1.PartialObjectMetadata, bool)
	// namespace returns a namespace's annotations; nil when namespaces
	// are not watched.
	namespace func(name string) map[string]string
}

// part is one cluster's share of the Topology. The watcher keeps each
// cluster's part until one of that cluster's caches changes, so a change in
// one cluster rebuilds only its part; merge joins the parts.
type part struct {
	cluster  Cluster
	keys     []string  // namespace/name of each of services, sorted
	services []Service // this cluster's own endpoint groups, sorted
	rules    []UserDestinationRule
}

// buildPart derives a cluster's nodes' localities, its services with their
// endpoints counted per locality (ready or not), and its users'
// DestinationRules from its objects.
func buildPart(in clusterObjects) *part {
	p := &part{cluster: Cluster{Name: in.name}}
	nodes := make(map[string]map[string]string, len(in.nodes))
	for _, n := range in.nodes {
		nodes[n.Name] = n.Labels
		p.cluster.Nodes = append(p.cluster.Nodes, Node{Name: n.Name, Locality: NodeLocality(n.Labels)})
	}
	slices.SortFunc(p.cluster.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })

	services := make(map[string]*Service, len(in.services))
	for _, s := range in.services {
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		svc := &Service{Namespace: s.Namespace, Name: s.Name, Hostname: s.Name + "." + s.Namespace + ".svc." + in.domain}
		for k, v := range s.Annotations {
			if strings.HasPrefix(k, "meshfleet.io/") {
				if svc.Annotations == nil {
					svc.Annotations = map[string]string{}
				}
				svc.Annotations[k] = v
			}
		}
		var nsAnnotations map[string]string
		if in.namespace != nil {
			nsAnnotations = in.namespace(s.Namespace)
		}
		if td, from := trafficDistribution(s, nsAnnotations); td != "" {
			svc.TrafficDistribution, svc.TrafficDistributionFrom = td, from+" of "+in.name+"'s copy"
		}
		services[s.Namespace+"/"+s.Name] = svc
	}

	type groupKey struct {
		l      Locality
		label  string
		source string
	}
	groups := map[*Service]map[groupKey]*EndpointGroup{}
	for _, es := range in.slices {
		svcName := es.Labels[discoveryv1.LabelServiceName]
		if svcName == "" {
			continue
		}
		svc := services[es.Namespace+"/"+svcName]
		if svc == nil {
			continue // slice of a Service this cluster does not have (yet)
		}
		for _, ep := range es.Endpoints {
			l, label, source := endpointLocality(es.Namespace, ep, nodes, in.pod)
			if groups[svc] == nil {
				groups[svc] = map[groupKey]*EndpointGroup{}
			}
			k := groupKey{l, label, source}
			g := groups[svc][k]
			if g == nil {
				g = &EndpointGroup{Cluster: in.name, Locality: l, Label: label, Source: source}
				groups[svc][k] = g
			}
			n := len(ep.Addresses)
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				g.Ready += n
			} else {
				g.NotReady += n
			}
		}
	}
	for svc, byLoc := range groups {
		for _, g := range byLoc {
			svc.Endpoints = append(svc.Endpoints, *g)
		}
		slices.SortFunc(svc.Endpoints, compareEndpoints)
	}

	p.keys = slices.Sorted(maps.Keys(services))
	p.services = make([]Service, len(p.keys))
	for i, k := range p.keys {
		p.services[i] = *services[k]
	}

	for _, u := range in.rules {
		host, _, _ := unstructured.NestedString(u.Object, "spec", "host")
		if host == "" || u.GetLabels()[LabelManagedBy] == ManagedByLocality {
			continue // the locality server's own rules are not users' rules
		}
		if u.GetLabels()[LabelManagedBy] == ManagedByIngress && u.GetNamespace() == ingressNamespace {
			continue // a MeshIngress rule is exported to the gateways' namespace only; sidecars still need ours
		}
		spec, _, _ := unstructured.NestedMap(u.Object, "spec")
		subsetsOnly := spec["trafficPolicy"] == nil && spec["workloadSelector"] == nil && spec["exportTo"] == nil
		p.rules = append(p.rules, UserDestinationRule{Cluster: in.name, Namespace: u.GetNamespace(), Name: u.GetName(), Host: host, SubsetsOnly: subsetsOnly})
	}
	return p
}

// endpointLocality is istiod's getPodLocality for the endpoint's Pod
// (EndpointLocality): the Pod's locality label, else its Node's labels.
// The Pod is the endpoint's targetRef, the Node the endpoint's nodeName
// (which the EndpointSlice controller copies from the Pod's spec.nodeName,
// where istiod reads it). istiod does not use the zone an EndpointSlice
// reports, and neither does this.
func endpointLocality(ns string, ep discoveryv1.Endpoint, nodes map[string]map[string]string, pod func(string) (*metav1.PartialObjectMetadata, bool)) (Locality, string, string) {
	var podLabels map[string]string
	if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" && pod != nil {
		podNS := ref.Namespace
		if podNS == "" {
			podNS = ns
		}
		if pm, ok := pod(podNS + "/" + ref.Name); ok {
			podLabels = pm.Labels
		}
	}
	var nodeLabels map[string]string
	nodeKnown := false
	if ep.NodeName != nil {
		nodeLabels, nodeKnown = nodes[*ep.NodeName]
	}
	return EndpointLocality(podLabels, nodeLabels, nodeKnown)
}

// trafficDistribution is istiod's model.GetTrafficDistribution for one
// copy of a Service: spec.trafficDistribution when istiod knows its value,
// else the Service's annotation networking.istio.io/traffic-distribution,
// else its namespace's (case-insensitive; a set annotation with an
// unknown value means istiod's default and hides the namespace's). It
// returns the value and where it was read.
func trafficDistribution(s *corev1.Service, nsAnnotations map[string]string) (value, from string) {
	if v := s.Spec.TrafficDistribution; v != nil {
		switch *v {
		case corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone, corev1.ServiceTrafficDistributionPreferSameNode:
			return *v, "spec.trafficDistribution"
		}
	}
	known := func(v string) string {
		for _, k := range []string{corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone, corev1.ServiceTrafficDistributionPreferSameNode} {
			if strings.EqualFold(v, k) {
				return k
			}
		}
		return ""
	}
	if v := s.Annotations[AnnotationTrafficDistribution]; v != "" {
		if k := known(v); k != "" {
			return k, "annotation " + AnnotationTrafficDistribution
		}
		return "", ""
	}
	if v := nsAnnotations[AnnotationTrafficDistribution]; v != "" {
		if k := known(v); k != "" {
			return k, "annotation " + AnnotationTrafficDistribution + " on namespace " + s.Namespace
		}
	}
	return "", ""
}

// merge joins the clusters' parts, given in cluster name order, into a
// Topology that shares nothing with them: services are merged by namespace
// and name (namespace sameness); a service's meshfleet.io/ annotations come
// from the first cluster that sets any (the config cluster first, then by
// name); its traffic distribution from the
// copy istiod uses (istiod's aggregate controller keeps the first registry's
// copy of a hostname, and the config cluster's registry comes first: the
// config cluster's copy when it has one, else the first cluster by name,
// since istiod's order of remote registries is the order it added them).
func merge(parts []*part, configCluster string) *Topology {
	t := &Topology{ConfigCluster: configCluster}
	if i := slices.IndexFunc(parts, func(p *part) bool { return p.cluster.Name == configCluster }); i > 0 {
		parts = append([]*part{parts[i]}, append(slices.Clone(parts[:i]), parts[i+1:]...)...)
	}
	type copyTD struct{ cluster, value, from string }
	copies := map[int][]copyTD{}
	n := 0
	for _, p := range parts {
		n = max(n, len(p.services))
	}
	at := make(map[string]int, n) // key → index in t.Services
	for _, p := range parts {
		t.Clusters = append(t.Clusters, Cluster{Name: p.cluster.Name, Nodes: slices.Clone(p.cluster.Nodes)})
		for i, s := range p.services {
			j, ok := at[p.keys[i]]
			if !ok {
				j = len(t.Services)
			}
			copies[j] = append(copies[j], copyTD{p.cluster.Name, s.TrafficDistribution, s.TrafficDistributionFrom})
			if !ok {
				at[p.keys[i]] = j
				s.Annotations = maps.Clone(s.Annotations)
				s.Endpoints = slices.Clone(s.Endpoints)
				t.Services = append(t.Services, s)
				continue
			}
			m := &t.Services[j]
			if m.Annotations == nil {
				m.Annotations = maps.Clone(s.Annotations)
			}
			m.Endpoints = append(m.Endpoints, s.Endpoints...)
		}
		t.UserDestinationRules = append(t.UserDestinationRules, p.rules...)
	}
	for j, cs := range copies {
		used := cs[0]
		for _, c := range cs[1:] {
			if c.value == "" || c.value == used.value {
				continue
			}
			t.Services[j].IgnoredTrafficDistribution = append(t.Services[j].IgnoredTrafficDistribution,
				fmt.Sprintf("%s's copy sets %s %s; istiod uses %s's copy", c.cluster, strings.TrimSuffix(c.from, " of "+c.cluster+"'s copy"), c.value, used.cluster))
		}
	}
	slices.SortFunc(t.Clusters, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	t.Sort()
	return t
}
