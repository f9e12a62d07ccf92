package ingress

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

const (
	// ClusterLabel is the label istiod puts on every endpoint and proxy
	// with the cluster it came from.
	ClusterLabel = "topology.istio.io/cluster"
	// LabelManagedBy / ManagedBy mark the objects Render makes. The
	// locality server does not count such a DestinationRule as a user's:
	// it is exported only to the gateways' namespace, so sidecars keep the
	// locality server's rule for the same host.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = topology.ManagedByIngress
	// LabelIngress names the MeshIngress an object was rendered from.
	LabelIngress = "meshfleet.io/mesh-ingress"
)

// NoRegion and NearestRegion make the failover entry rendered when a route
// gives none (see Render).
const (
	NoRegion      = "meshfleet-no-region"
	NearestRegion = "meshfleet-nearest"
)

// DefaultSelector selects Istio's ingress gateway pods.
var DefaultSelector = map[string]string{"istio": "ingressgateway"}

// Objects is what one MeshIngress becomes, all in render.GatewayNamespace.
type Objects struct {
	Gateways         []*clientnetworkingv1.Gateway
	VirtualService   *clientnetworkingv1.VirtualService
	DestinationRules []*clientnetworkingv1.DestinationRule
}

// SubsetName is the DestinationRule subset that sends to cluster first.
func SubsetName(cluster string) string { return "cluster-" + cluster }

// hostOf is the Service's full host name.
func hostOf(s v1beta1.IngressService, domain string) string {
	if domain == "" {
		domain = "cluster.local"
	}
	return s.Name + "." + s.Namespace + ".svc." + domain
}

// Render turns mi into Istio config. clusters lists the mesh's member
// clusters, used when spec.gatewayClusters is empty. domain is the mesh's
// trust/DNS domain (cluster.local when empty).
func Render(mi *v1beta1.MeshIngress, clusters []string, domain string) (*Objects, error) {
	if err := Validate(mi); err != nil {
		return nil, err
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: render.GatewayNamespace,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelIngress: mi.Name}}
	}
	base := "meshingress-" + mi.Name
	selector := mi.Spec.GatewaySelector
	if len(selector) == 0 {
		selector = DefaultSelector
	}
	port := uint32(mi.Spec.Port)
	if port == 0 {
		port = 80
	}
	entry := mi.Spec.GatewayClusters
	if len(entry) == 0 {
		entry = clusters
	}
	if len(entry) == 0 {
		return nil, fmt.Errorf("MeshIngress %s/%s: no entry cluster: set spec.gatewayClusters or join a cluster", mi.Namespace, mi.Name)
	}
	out := &Objects{}
	var gwNames []string
	for _, c := range entry {
		sel := map[string]string{ClusterLabel: c}
		for k, v := range selector {
			sel[k] = v
		}
		gw := &clientnetworkingv1.Gateway{ObjectMeta: meta(base + "-" + c)}
		gw.Spec.Selector = sel
		gw.Spec.Servers = []*networkingv1alpha3.Server{{
			Port:  &networkingv1alpha3.Port{Number: port, Name: "http-" + mi.Name, Protocol: "HTTP"},
			Hosts: mi.Spec.Hosts,
		}}
		out.Gateways = append(out.Gateways, gw)
		gwNames = append(gwNames, gw.Name)
	}

	vs := &clientnetworkingv1.VirtualService{ObjectMeta: meta(VirtualServiceName(mi.Name))}
	vs.Spec.Hosts = mi.Spec.Hosts
	vs.Spec.Gateways = gwNames
	type svcUse struct {
		svc      v1beta1.IngressService
		clusters map[string]bool
		fallback []v1beta1.RegionFallback
	}
	uses := map[string]*svcUse{}
	use := func(r v1beta1.IngressRoute, cluster string) *networkingv1alpha3.Destination {
		h := hostOf(r.Service, domain)
		u := uses[h]
		if u == nil {
			u = &svcUse{svc: r.Service, clusters: map[string]bool{}, fallback: r.Fallback}
			uses[h] = u
		}
		u.clusters[cluster] = true
		return &networkingv1alpha3.Destination{Host: h, Subset: SubsetName(cluster),
			Port: &networkingv1alpha3.PortSelector{Number: uint32(r.Service.Port)}}
	}
	for _, r := range mi.Spec.Routes {
		prefix := r.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		uri := &networkingv1alpha3.StringMatch{MatchType: &networkingv1alpha3.StringMatch_Prefix{Prefix: prefix}}
		for _, h := range r.HeaderRoutes {
			vs.Spec.Http = append(vs.Spec.Http, &networkingv1alpha3.HTTPRoute{
				Name: r.Name + "-" + h.Cluster + "-by-header",
				Match: []*networkingv1alpha3.HTTPMatchRequest{{Uri: uri, Headers: map[string]*networkingv1alpha3.StringMatch{
					h.Name: {MatchType: &networkingv1alpha3.StringMatch_Exact{Exact: h.Value}}}}},
				Route: []*networkingv1alpha3.HTTPRouteDestination{{Destination: use(r, h.Cluster), Weight: 100}},
			})
		}
		hr := &networkingv1alpha3.HTTPRoute{Name: r.Name, Match: []*networkingv1alpha3.HTTPMatchRequest{{Uri: uri}}}
		for _, w := range r.Weights {
			if w.Weight == 0 {
				continue
			}
			hr.Route = append(hr.Route, &networkingv1alpha3.HTTPRouteDestination{Destination: use(r, w.Cluster), Weight: w.Weight})
		}
		vs.Spec.Http = append(vs.Spec.Http, hr)
	}
	out.VirtualService = vs

	hosts := make([]string, 0, len(uses))
	for h := range uses {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		u := uses[h]
		var failover []*networkingv1alpha3.LocalityLoadBalancerSetting_Failover
		for _, f := range u.fallback {
			failover = append(failover, &networkingv1alpha3.LocalityLoadBalancerSetting_Failover{From: f.From, To: f.To})
		}
		dr := &clientnetworkingv1.DestinationRule{ObjectMeta: meta(base + "-" + u.svc.Name + "-" + u.svc.Namespace)}
		dr.Spec.Host = h
		dr.Spec.ExportTo = []string{"."}
		// istiod orders the other clusters by locality after a
		// failoverPriority only when failover is not empty
		// (loadbalancer.ApplyLocalityLoadBalancer); an entry whose from
		// region no proxy has turns that on and changes nothing else.
		if len(failover) == 0 {
			failover = []*networkingv1alpha3.LocalityLoadBalancerSetting_Failover{{From: NoRegion, To: NearestRegion}}
		}
		dr.Spec.TrafficPolicy = policy(failover, nil)
		cs := make([]string, 0, len(u.clusters))
		for c := range u.clusters {
			cs = append(cs, c)
		}
		sort.Strings(cs)
		for _, c := range cs {
			dr.Spec.Subsets = append(dr.Spec.Subsets, &networkingv1alpha3.Subset{
				Name:          SubsetName(c),
				TrafficPolicy: policy(failover, []string{ClusterLabel + "=" + c}),
			})
		}
		out.DestinationRules = append(out.DestinationRules, dr)
	}
	return out, nil
}

// policy is locality failover with the outlier detection istiod needs
// before it sends lower priorities (without it Envoy never fails over):
// the locality server's default, so gateways and sidecars eject alike.
func policy(failover []*networkingv1alpha3.LocalityLoadBalancerSetting_Failover, priority []string) *networkingv1alpha3.TrafficPolicy {
	od := locality.DefaultOutlierDetection()
	return &networkingv1alpha3.TrafficPolicy{
		LoadBalancer: &networkingv1alpha3.LoadBalancerSettings{
			LocalityLbSetting: &networkingv1alpha3.LocalityLoadBalancerSetting{
				Enabled:          wrapperspb.Bool(true),
				Failover:         failover,
				FailoverPriority: priority,
			},
		},
		OutlierDetection: &networkingv1alpha3.OutlierDetection{
			Consecutive_5XxErrors: wrapperspb.UInt32(od.Consecutive5xxErrors),
			Interval:              durationpb.New(od.Interval.Duration),
			BaseEjectionTime:      durationpb.New(od.BaseEjectionTime.Duration),
			MaxEjectionPercent:    od.MaxEjectionPercent,
		},
	}
}
