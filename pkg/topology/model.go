package topology

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// The label that marks the DestinationRules the locality server writes:
// they are left out of UserDestinationRules.
const (
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedByLocality = "meshfleet-locality"
	// ManagedByIngress marks the DestinationRules rendered from a
	// MeshIngress (pkg/ingress): exported only to ingressNamespace, they
	// take no host from the locality server.
	ManagedByIngress = "meshfleet-ingress"
	ingressNamespace = "istio-gateways"
)

// Locality is where a node or endpoint runs.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	Subzone string `json:"subzone,omitempty"`
}

// String returns region/zone/subzone, without trailing empty parts.
func (l Locality) String() string {
	return strings.TrimRight(l.Region+"/"+l.Zone+"/"+l.Subzone, "/")
}

// Topology is the state of every member cluster that locality routing needs.
type Topology struct {
	// Clusters are the member clusters, sorted by name.
	Clusters []Cluster `json:"clusters,omitempty"`
	// Services are the services of all clusters, merged by namespace and
	// name (namespace sameness), sorted.
	Services []Service `json:"services,omitempty"`
	// UserDestinationRules are the DestinationRules users keep in the
	// clusters; meshfleet generates nothing for the hosts covered by one in
	// the config cluster (the only cluster istiod reads them from).
	UserDestinationRules []UserDestinationRule `json:"userDestinationRules,omitempty"`
	// ConfigCluster is the cluster whose API server istiod reads its
	// configuration from (the primary): its DestinationRules are the ones
	// istiod applies, and its copy of a Service is the one istiod uses.
	// Empty when unknown: then every cluster's DestinationRules count, and
	// a Service's settings come from the first cluster by name.
	ConfigCluster string `json:"configCluster,omitempty"`
}

// Cluster is one member cluster.
type Cluster struct {
	Name  string `json:"name"`
	Nodes []Node `json:"nodes,omitempty"`
}

// Node is a Kubernetes Node and the locality its labels give.
type Node struct {
	Name     string   `json:"name"`
	Locality Locality `json:"locality"`
}

// Service is a Kubernetes Service, merged over the clusters that have it.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Hostname is the service's FQDN, name.namespace.svc.<domain>.
	Hostname string `json:"hostname"`
	// Annotations holds the Service's meshfleet.io/ annotations (per-service
	// settings), from the first cluster that sets any: the config cluster,
	// then the others by name.
	Annotations map[string]string `json:"annotations,omitempty"`
	// TrafficDistribution is the traffic distribution istiod applies to the
	// Service (model.GetTrafficDistribution): spec.trafficDistribution when
	// it is one istiod knows (PreferClose, PreferSameZone, PreferSameNode),
	// else the annotation networking.istio.io/traffic-distribution, read from
	// the copy of the Service istiod uses (see TrafficDistributionFrom);
	// empty for istiod's default (Any).
	TrafficDistribution string `json:"trafficDistribution,omitempty"`
	// TrafficDistributionFrom says where TrafficDistribution was read:
	// the field or annotation and the cluster whose copy istiod uses.
	TrafficDistributionFrom string `json:"trafficDistributionFrom,omitempty"`
	// IgnoredTrafficDistribution lists copies of the Service in other
	// clusters whose traffic distribution differs from the one istiod uses
	// (istiod reads one copy per hostname: the config cluster's when it has
	// one; aggregate.Controller.Services).
	IgnoredTrafficDistribution []string `json:"ignoredTrafficDistribution,omitempty"`
	// Endpoints counts endpoints per cluster and locality, sorted.
	Endpoints []EndpointGroup `json:"endpoints,omitempty"`
}

// Key returns namespace/name.
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// EndpointGroup counts one service's endpoints in one cluster and locality
// string.
type EndpointGroup struct {
	Cluster  string   `json:"cluster"`
	Locality Locality `json:"locality"`
	// Label is the locality string istiod keeps for these endpoints
	// (model.Locality.Label): "r1/z1" from a pod label "r1.z1", "r1/z1/"
	// from a Node. istiod groups EDS endpoints by it, so two labels that
	// parse to one Locality reach clients as that locality twice.
	Label string `json:"label,omitempty"`
	// Source is where the locality came from (SourcePodLabel,
	// SourcePodLabelLegacy, SourceNode); empty without one.
	Source   string `json:"source,omitempty"`
	Ready    int    `json:"ready"`
	NotReady int    `json:"notReady,omitempty"`
}

// UserDestinationRule is a DestinationRule found in a cluster.
type UserDestinationRule struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Host is spec.host as written (short names are relative to Namespace).
	Host string `json:"host"`
	// SubsetsOnly is set when the rule has no traffic policy, workload
	// selector or exportTo (as Flagger's and meshctl canary's rules):
	// istiod merges a second rule for the same host in the same namespace
	// into it, taking that rule's traffic policy.
	SubsetsOnly bool `json:"subsetsOnly,omitempty"`
}

// Regions returns the regions of all nodes and endpoints, sorted.
func (t *Topology) Regions() []string {
	set := map[string]bool{}
	for _, c := range t.Clusters {
		for _, n := range c.Nodes {
			if n.Locality.Region != "" {
				set[n.Locality.Region] = true
			}
		}
	}
	for _, s := range t.Services {
		for _, e := range s.Endpoints {
			if e.Locality.Region != "" {
				set[e.Locality.Region] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// ServiceByKey returns the Service with key "namespace/name", found by
// binary search: t's Services must be in Sort's order.
func (t *Topology) ServiceByKey(key string) (Service, bool) {
	ns, name, _ := strings.Cut(key, "/")
	i, ok := slices.BinarySearchFunc(t.Services, [2]string{ns, name}, func(s Service, k [2]string) int {
		return cmp.Or(cmp.Compare(s.Namespace, k[0]), cmp.Compare(s.Name, k[1]))
	})
	if !ok {
		return Service{}, false
	}
	return t.Services[i], true
}

// Sort puts every list in its canonical order, so that equal states print
// equally: clusters and nodes by name, services by namespace then name,
// endpoint groups by cluster then locality, users' rules by cluster,
// namespace and name.
func (t *Topology) Sort() {
	slices.SortFunc(t.Clusters, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	for _, c := range t.Clusters {
		slices.SortFunc(c.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	}
	slices.SortFunc(t.Services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, s := range t.Services {
		slices.SortFunc(s.Endpoints, compareEndpoints)
	}
	slices.SortFunc(t.UserDestinationRules, func(a, b UserDestinationRule) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// compareEndpoints orders endpoint groups by cluster, locality, then label.
func compareEndpoints(a, b EndpointGroup) int {
	return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), a.Locality.Compare(b.Locality), cmp.Compare(a.Label, b.Label))
}

// Compare orders localities by region, zone, then subzone.
func (l Locality) Compare(o Locality) int {
	return cmp.Or(cmp.Compare(l.Region, o.Region), cmp.Compare(l.Zone, o.Zone), cmp.Compare(l.Subzone, o.Subzone))
}

// Validate checks what the watchers guarantee and golden inputs must keep:
// names present, services unique, counts not negative.
func (t *Topology) Validate() error {
	seen := map[string]bool{}
	for i, s := range t.Services {
		if s.Namespace == "" || s.Name == "" || s.Hostname == "" {
			return fmt.Errorf("services[%d]: namespace, name and hostname are required (got %q/%q, %q)", i, s.Namespace, s.Name, s.Hostname)
		}
		if seen[s.Key()] {
			return fmt.Errorf("services[%d]: %s is listed twice; merge its endpoints into one entry", i, s.Key())
		}
		seen[s.Key()] = true
		for j, e := range s.Endpoints {
			if e.Ready < 0 || e.NotReady < 0 {
				return fmt.Errorf("services[%d] (%s).endpoints[%d]: ready and notReady must not be negative", i, s.Key(), j)
			}
		}
	}
	for i, c := range t.Clusters {
		if c.Name == "" {
			return fmt.Errorf("clusters[%d]: name is required", i)
		}
	}
	return nil
}

// DeepCopy returns a copy that shares nothing with t.
func (t *Topology) DeepCopy() *Topology {
	if t == nil {
		return nil
	}
	out := &Topology{}
	for _, c := range t.Clusters {
		c.Nodes = append([]Node(nil), c.Nodes...)
		out.Clusters = append(out.Clusters, c)
	}
	for _, s := range t.Services {
		if s.Annotations != nil {
			a := make(map[string]string, len(s.Annotations))
			for k, v := range s.Annotations {
				a[k] = v
			}
			s.Annotations = a
		}
		s.Endpoints = append([]EndpointGroup(nil), s.Endpoints...)
		s.IgnoredTrafficDistribution = append([]string(nil), s.IgnoredTrafficDistribution...)
		out.Services = append(out.Services, s)
	}
	out.UserDestinationRules = append([]UserDestinationRule(nil), t.UserDestinationRules...)
	out.ConfigCluster = t.ConfigCluster
	return out
}
