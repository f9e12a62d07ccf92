package topology

import (
	"cmp"
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
	nodes := make(map[string]Locality, len(in.nodes))
	for _, n := range in.nodes {
		l := NodeLocality(n.Labels)
		nodes[n.Name] = l
		p.cluster.Nodes = append(p.cluster.Nodes, Node{Name: n.Name, Locality: l})
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
		if s.Spec.TrafficDistribution != nil {
			svc.TrafficDistribution = *s.Spec.TrafficDistribution
		}
		services[s.Namespace+"/"+s.Name] = svc
	}

	groups := map[*Service]map[Locality]*EndpointGroup{}
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
			l := endpointLocality(es.Namespace, ep, nodes, in.pod)
			if groups[svc] == nil {
				groups[svc] = map[Locality]*EndpointGroup{}
			}
			g := groups[svc][l]
			if g == nil {
				g = &EndpointGroup{Cluster: in.name, Locality: l}
				groups[svc][l] = g
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
		p.rules = append(p.rules, UserDestinationRule{Cluster: in.name, Namespace: u.GetNamespace(), Name: u.GetName(), Host: host})
	}
	return p
}

// endpointLocality is the Pod's topology.istio.io/locality label, else the
// Node's labels, else the zone the EndpointSlice reports.
func endpointLocality(ns string, ep discoveryv1.Endpoint, nodes map[string]Locality, pod func(string) (*metav1.PartialObjectMetadata, bool)) Locality {
	if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" && pod != nil {
		podNS := ref.Namespace
		if podNS == "" {
			podNS = ns
		}
		if pm, ok := pod(podNS + "/" + ref.Name); ok {
			if l, ok := PodLocality(pm.Labels); ok {
				return l
			}
		}
	}
	if ep.NodeName != nil {
		if l, ok := nodes[*ep.NodeName]; ok && l != (Locality{}) {
			return l
		}
	}
	if ep.Zone != nil {
		return Locality{Zone: *ep.Zone}
	}
	return Locality{}
}

// merge joins the clusters' parts, given in cluster name order, into a
// Topology that shares nothing with them: services are merged by namespace
// and name (namespace sameness); a service's meshfleet.io/ annotations come
// from the first cluster that sets any, its traffic distribution from the
// first that sets one.
func merge(parts []*part) *Topology {
	t := &Topology{}
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
				at[p.keys[i]] = len(t.Services)
				s.Annotations = maps.Clone(s.Annotations)
				s.Endpoints = slices.Clone(s.Endpoints)
				t.Services = append(t.Services, s)
				continue
			}
			m := &t.Services[j]
			if m.Annotations == nil {
				m.Annotations = maps.Clone(s.Annotations)
			}
			if m.TrafficDistribution == "" {
				m.TrafficDistribution = s.TrafficDistribution
			}
			m.Endpoints = append(m.Endpoints, s.Endpoints...)
		}
		t.UserDestinationRules = append(t.UserDestinationRules, p.rules...)
	}
	t.Sort()
	return t
}
