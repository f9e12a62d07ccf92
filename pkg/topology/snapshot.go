package topology

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
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
	services []*cachedService
	slices   []*cachedSlice
	rules    []*unstructured.Unstructured // users' DestinationRules
	// pod returns the metadata of the Pod namespace/name, if known.
	pod func(key string) (*metav1.PartialObjectMetadata, bool)
	// namespace returns a namespace's annotations; nil when namespaces
	// are not watched.
	namespace func(name string) map[string]string
	// serviceByKey and slicesByService look one Service (namespace/name)
	// and its EndpointSlices up for updatePart (the informers' indexes);
	// nil: searched in services and slices.
	serviceByKey    func(key string) *cachedService
	slicesByService func(key string) []*cachedSlice
}

// service returns Service key, or nil.
func (in clusterObjects) service(key string) *cachedService {
	if in.serviceByKey != nil {
		return in.serviceByKey(key)
	}
	for _, s := range in.services {
		if serviceKey(s.namespace, s.name) == key {
			return s
		}
	}
	return nil
}

// slicesOf returns the EndpointSlices of Service key.
func (in clusterObjects) slicesOf(key string) []*cachedSlice {
	if in.slicesByService != nil {
		return in.slicesByService(key)
	}
	var out []*cachedSlice
	for _, es := range in.slices {
		if es.service == key {
			out = append(out, es)
		}
	}
	return out
}

// part is one cluster's share of the Topology. The watcher keeps each
// cluster's part and brings it up to date from its informers' events: a
// change of one Service (its object, its EndpointSlices, the Pods they
// name, its namespace's annotation) rebuilds that Service's entry only
// (updatePart); a change of a Node rebuilds the whole part (buildPart).
// merge and mergeKeys join the parts.
type part struct {
	cluster Cluster
	// nodes are the Nodes' labels by name (endpoint localities).
	nodes map[string]map[string]string
	// services are this cluster's own copies, with their endpoint groups
	// sorted, by namespace/name.
	services map[string]*Service
	// pods maps a Pod (namespace/name) to the Services whose endpoints
	// name it, and svcPods each Service to the Pods it names: a Pod's
	// locality label changing rebuilds those Services.
	pods    map[string]map[string]bool
	svcPods map[string][]string
	rules   []UserDestinationRule
}

// serviceKey is namespace/name.
func serviceKey(ns, name string) string { return ns + "/" + name }

// buildPart derives a cluster's nodes' localities, its services with their
// endpoints counted per locality (ready or not), and its users'
// DestinationRules from its objects.
func buildPart(in clusterObjects) *part {
	p := &part{cluster: Cluster{Name: in.name}, services: map[string]*Service{}, pods: map[string]map[string]bool{}, svcPods: map[string][]string{}}
	p.nodes = make(map[string]map[string]string, len(in.nodes))
	for _, n := range in.nodes {
		p.nodes[n.Name] = n.Labels
		p.cluster.Nodes = append(p.cluster.Nodes, Node{Name: n.Name, Locality: NodeLocality(n.Labels)})
	}
	slices.SortFunc(p.cluster.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	bySvc := map[string][]*cachedSlice{}
	for _, es := range in.slices {
		if es.service != "" {
			bySvc[es.service] = append(bySvc[es.service], es)
		}
	}
	for _, s := range in.services {
		k := serviceKey(s.namespace, s.name)
		svc, pods := buildService(in, p.nodes, s, bySvc[k])
		p.setService(k, svc, pods)
	}
	p.rules = buildRules(in)
	return p
}

// updatePart brings p up to date for the Services named by keys (their
// object, slices, Pods or namespace changed), from in's lookups; it
// changes p in place. A Service gone (or now ExternalName) leaves p.
func updatePart(p *part, in clusterObjects, keys []string) {
	for _, k := range keys {
		s := in.service(k)
		if s == nil {
			p.setService(k, nil, nil)
			continue
		}
		svc, pods := buildService(in, p.nodes, s, in.slicesOf(k))
		p.setService(k, svc, pods)
	}
}

// keysOf resolves what changed in a cluster to the Services it may
// change: services named, the Services naming a changed Pod, and the
// Services of a namespace whose annotations changed.
func (p *part) keysOf(services, pods, namespaces map[string]bool) []string {
	out := map[string]bool{}
	for k := range services {
		out[k] = true
	}
	for pod := range pods {
		for k := range p.pods[pod] {
			out[k] = true
		}
	}
	if len(namespaces) > 0 {
		for k := range p.services {
			if ns, _, _ := strings.Cut(k, "/"); namespaces[ns] {
				out[k] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(out))
}

// setService records (or, with svc nil, removes) the cluster's copy of
// Service k and the Pods its endpoints name.
func (p *part) setService(k string, svc *Service, pods []string) {
	for _, pod := range p.svcPods[k] {
		delete(p.pods[pod], k)
		if len(p.pods[pod]) == 0 {
			delete(p.pods, pod)
		}
	}
	delete(p.svcPods, k)
	if svc == nil {
		delete(p.services, k)
		return
	}
	p.services[k] = svc
	if len(pods) > 0 {
		p.svcPods[k] = pods
		for _, pod := range pods {
			if p.pods[pod] == nil {
				p.pods[pod] = map[string]bool{}
			}
			p.pods[pod][k] = true
		}
	}
}

// buildService is one cluster's copy of Service s with the endpoints of
// its slices counted per locality, and the Pods the endpoints name; nil
// for an ExternalName Service.
func buildService(in clusterObjects, nodes map[string]map[string]string, s *cachedService, esl []*cachedSlice) (*Service, []string) {
	if s.externalName {
		return nil, nil
	}
	svc := &Service{Namespace: s.namespace, Name: s.name, Hostname: s.name + "." + s.namespace + ".svc." + in.domain}
	for k, v := range s.annotations {
		if strings.HasPrefix(k, annotationPrefix) {
			if svc.Annotations == nil {
				svc.Annotations = map[string]string{}
			}
			svc.Annotations[k] = v
		}
	}
	var nsAnnotations map[string]string
	if in.namespace != nil {
		nsAnnotations = in.namespace(s.namespace)
	}
	if td, from := trafficDistribution(s, nsAnnotations); td != "" {
		svc.TrafficDistribution, svc.TrafficDistributionFrom = td, from+" of "+in.name+"'s copy"
	}

	type groupKey struct {
		l      Locality
		label  string
		source string
	}
	groups := map[groupKey]*EndpointGroup{}
	var pods []string
	for _, es := range esl {
		for _, ep := range es.endpoints {
			if ep.pod != "" {
				pods = append(pods, ep.pod)
			}
			l, label, source := endpointLocality(ep, nodes, in.pod)
			k := groupKey{l, label, source}
			g := groups[k]
			if g == nil {
				g = &EndpointGroup{Cluster: in.name, Locality: l, Label: label, Source: source}
				groups[k] = g
			}
			n := int(ep.addresses)
			if ep.ready {
				g.Ready += n
			} else {
				g.NotReady += n
			}
		}
	}
	for _, g := range groups {
		svc.Endpoints = append(svc.Endpoints, *g)
	}
	slices.SortFunc(svc.Endpoints, compareEndpoints)
	slices.Sort(pods)
	return svc, slices.Compact(pods)
}

// buildRules lists the users' DestinationRules of a cluster.
func buildRules(in clusterObjects) []UserDestinationRule {
	var out []UserDestinationRule
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
		out = append(out, UserDestinationRule{Cluster: in.name, Namespace: u.GetNamespace(), Name: u.GetName(), Host: host, SubsetsOnly: subsetsOnly})
	}
	return out
}

// endpointLocality is istiod's getPodLocality for the endpoint's Pod
// (EndpointLocality): the Pod's locality label, else its Node's labels.
// The Pod is the endpoint's targetRef, the Node the endpoint's nodeName
// (which the EndpointSlice controller copies from the Pod's spec.nodeName,
// where istiod reads it). istiod does not use the zone an EndpointSlice
// reports, and neither does this.
func endpointLocality(ep cachedEndpoint, nodes map[string]map[string]string, pod func(string) (*metav1.PartialObjectMetadata, bool)) (Locality, string, string) {
	var podLabels map[string]string
	if ep.pod != "" && pod != nil {
		if pm, ok := pod(ep.pod); ok {
			podLabels = pm.Labels
		}
	}
	var nodeLabels map[string]string
	nodeKnown := false
	if ep.node != "" {
		nodeLabels, nodeKnown = nodes[ep.node]
	}
	return EndpointLocality(podLabels, nodeLabels, nodeKnown)
}

// trafficDistribution is istiod's model.GetTrafficDistribution for one
// copy of a Service: spec.trafficDistribution when istiod knows its value,
// else the Service's annotation networking.istio.io/traffic-distribution,
// else its namespace's (case-insensitive; a set annotation with an
// unknown value means istiod's default and hides the namespace's). It
// returns the value and where it was read.
func trafficDistribution(s *cachedService, nsAnnotations map[string]string) (value, from string) {
	switch v := s.trafficDistribution; v {
	case corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone, corev1.ServiceTrafficDistributionPreferSameNode:
		return v, "spec.trafficDistribution"
	}
	known := func(v string) string {
		for _, k := range []string{corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone, corev1.ServiceTrafficDistributionPreferSameNode} {
			if strings.EqualFold(v, k) {
				return k
			}
		}
		return ""
	}
	if v := s.annotations[AnnotationTrafficDistribution]; v != "" {
		if k := known(v); k != "" {
			return k, "annotation " + AnnotationTrafficDistribution
		}
		return "", ""
	}
	if v := nsAnnotations[AnnotationTrafficDistribution]; v != "" {
		if k := known(v); k != "" {
			return k, "annotation " + AnnotationTrafficDistribution + " on namespace " + s.namespace
		}
	}
	return "", ""
}

// merge joins the clusters' parts, given in cluster name order, into a
// Topology that shares nothing with them: services are merged by namespace
// and name (namespace sameness, mergeOne).
func merge(parts []*part, configCluster string) *Topology {
	t := &Topology{ConfigCluster: configCluster}
	keys := map[string]bool{}
	for _, p := range parts {
		t.Clusters = append(t.Clusters, Cluster{Name: p.cluster.Name, Nodes: slices.Clone(p.cluster.Nodes)})
		for k := range p.services {
			keys[k] = true
		}
		t.UserDestinationRules = append(t.UserDestinationRules, p.rules...)
	}
	ordered := configFirst(parts, configCluster)
	t.Services = make([]Service, 0, len(keys))
	for k := range keys {
		if s, ok := mergeOne(ordered, k); ok {
			t.Services = append(t.Services, s)
		}
	}
	slices.SortFunc(t.Clusters, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	t.Sort()
	return t
}

// mergeKeys is merge for a change of the Services named by keys only: the
// result is prev with those Services merged again from the parts (added,
// replaced or removed); the clusters, their nodes and the users' rules are
// prev's (a change of those takes merge). Unchanged Services are shared
// with prev: Topologies are read-only once built.
func mergeKeys(prev *Topology, parts []*part, keys []string) *Topology {
	if len(keys) == 0 {
		return prev
	}
	t := &Topology{Clusters: prev.Clusters, UserDestinationRules: prev.UserDestinationRules, ConfigCluster: prev.ConfigCluster}
	t.Services = slices.Clone(prev.Services)
	ordered := configFirst(parts, prev.ConfigCluster)
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		i, found := slices.BinarySearchFunc(t.Services, [2]string{ns, name}, func(s Service, k [2]string) int {
			return cmp.Or(cmp.Compare(s.Namespace, k[0]), cmp.Compare(s.Name, k[1]))
		})
		s, ok := mergeOne(ordered, k)
		switch {
		case ok && found:
			t.Services[i] = s
		case ok:
			t.Services = slices.Insert(t.Services, i, s)
		case found:
			t.Services = slices.Delete(t.Services, i, i+1)
		}
	}
	return t
}

// configFirst orders the parts as istiod's registries: the config
// cluster's first, then the others by name.
func configFirst(parts []*part, configCluster string) []*part {
	if i := slices.IndexFunc(parts, func(p *part) bool { return p.cluster.Name == configCluster }); i > 0 {
		return append([]*part{parts[i]}, append(slices.Clone(parts[:i]), parts[i+1:]...)...)
	}
	return parts
}

// mergeOne merges the copies of Service k over the parts (in
// configFirst's order) into one Service that shares nothing with them
// (false when no cluster has it). Its meshfleet.io/ annotations come from
// the first cluster that sets any (the config cluster first, then by
// name); its traffic distribution from the copy istiod uses (istiod's
// aggregate controller keeps the first registry's copy of a hostname, and
// the config cluster's registry comes first: the config cluster's copy
// when it has one, else the first cluster by name, since istiod's order of
// remote registries is the order it added them).
func mergeOne(parts []*part, k string) (Service, bool) {
	var (
		m    Service
		used *Service
		from string
	)
	for _, p := range parts {
		s := p.services[k]
		if s == nil {
			continue
		}
		if used == nil {
			used, from = s, p.cluster.Name
			m = *s
			m.Annotations = maps.Clone(s.Annotations)
			m.Endpoints = slices.Clone(s.Endpoints)
			continue
		}
		if m.Annotations == nil {
			m.Annotations = maps.Clone(s.Annotations)
		}
		m.Endpoints = append(m.Endpoints, s.Endpoints...)
		if s.TrafficDistribution != "" && s.TrafficDistribution != used.TrafficDistribution {
			m.IgnoredTrafficDistribution = append(m.IgnoredTrafficDistribution,
				fmt.Sprintf("%s's copy sets %s %s; istiod uses %s's copy", p.cluster.Name, strings.TrimSuffix(s.TrafficDistributionFrom, " of "+p.cluster.Name+"'s copy"), s.TrafficDistribution, from))
		}
	}
	if used == nil {
		return Service{}, false
	}
	slices.SortFunc(m.Endpoints, compareEndpoints)
	return m, true
}
