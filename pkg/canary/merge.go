package canary

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
)

// RouteName names the route meshfleet adds to a VirtualService that had no
// route for the service.
const RouteName = "meshfleet-canary"

// HostMatches reports whether h, as written in an Istio resource in
// namespace ns, names the Service svc of that namespace: the short name,
// name.namespace, name.namespace.svc or the full name under domain.
func HostMatches(h, svc, ns, domain string) bool {
	switch h {
	case svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc." + domain:
		return true
	}
	return false
}

// Target is what the merge functions need to know of the canary: which
// host it routes and the two subsets.
type Target struct {
	Service, Namespace, Domain string
	StableSubset, CanarySubset string
}

// Host is the Service's full name.
func (t Target) Host() string {
	return t.Service + "." + t.Namespace + ".svc." + t.Domain
}

// ours reports whether d routes to the service's stable or canary version
// (or to the service as a whole, which the canary takes over).
func (t Target) ours(d *networkingv1alpha3.Destination) bool {
	if d == nil || !HostMatches(d.Host, t.Service, t.Namespace, t.Domain) {
		return false
	}
	return d.Subset == "" || d.Subset == t.StableSubset || d.Subset == t.CanarySubset
}

// MergeVirtualService returns vs with split applied. In every HTTP route,
// the destinations that go to the service (without a subset, or to the
// stable or canary subset) are replaced by the two subsets, sharing the
// weight those destinations had: in a route that sends 80% to the service
// and 20% elsewhere, a 90/10 split becomes 72/8/20. Routes to other hosts
// or other subsets of the service, TCP and TLS routes, matches, retries,
// timeouts and headers are kept as they are. When no route went to the
// service, a catch-all route named RouteName is appended. Destinations
// that end with no weight are left out (one destination takes 100).
// vs is not modified.
func MergeVirtualService(vs *networkingv1alpha3.VirtualService, t Target, split Split) (*networkingv1alpha3.VirtualService, error) {
	if split.Stable+split.Canary != 100 || split.Stable < 0 || split.Canary < 0 {
		return nil, fmt.Errorf("split %s does not add up to 100", split)
	}
	out := &networkingv1alpha3.VirtualService{}
	if vs != nil {
		out = proto.Clone(vs).(*networkingv1alpha3.VirtualService)
	}
	if len(out.Hosts) == 0 {
		out.Hosts = []string{t.Service}
	}
	rewritten := false
	for i, r := range out.Http {
		var mine []*networkingv1alpha3.HTTPRouteDestination
		for _, d := range r.Route {
			if t.ours(d.Destination) {
				mine = append(mine, d)
			}
		}
		if len(mine) == 0 {
			continue
		}
		share := int32(0)
		for _, d := range mine {
			share += effectiveWeight(r, d)
		}
		var routes []*networkingv1alpha3.HTTPRouteDestination
		placed := false
		for _, d := range r.Route {
			if !t.ours(d.Destination) {
				routes = append(routes, d)
				continue
			}
			if placed {
				continue
			}
			placed = true
			routes = append(routes, splitDestinations(mine[0], t, split, share)...)
		}
		if len(routes) == 1 {
			routes[0].Weight = 0 // the only destination takes everything
		}
		out.Http[i].Route = routes
		rewritten = true
	}
	if rewritten {
		return out, nil
	}
	for i, r := range out.Http {
		if catchAll(r) {
			return nil, fmt.Errorf("http route %d%s sends every request elsewhere before a route for %s could be added; "+
				"point one of its destinations at host %s, or add a route for it above", i, nameSuffix(r), t.Host(), t.Service)
		}
	}
	tmpl := &networkingv1alpha3.HTTPRouteDestination{Destination: &networkingv1alpha3.Destination{Host: t.Host()}}
	routes := splitDestinations(tmpl, t, split, 100)
	if len(routes) == 1 {
		routes[0].Weight = 0
	}
	out.Http = append(out.Http, &networkingv1alpha3.HTTPRoute{Name: RouteName, Route: routes})
	return out, nil
}

// effectiveWeight is d's share of r in percent: a lone destination takes
// all of it.
func effectiveWeight(r *networkingv1alpha3.HTTPRoute, d *networkingv1alpha3.HTTPRouteDestination) int32 {
	if len(r.Route) == 1 && d.Weight == 0 {
		return 100
	}
	return d.Weight
}

// splitDestinations divides share between the stable and canary subsets,
// copying tmpl's host, port and headers; zero weights are dropped.
func splitDestinations(tmpl *networkingv1alpha3.HTTPRouteDestination, t Target, split Split, share int32) []*networkingv1alpha3.HTTPRouteDestination {
	stable := (share*split.Stable + 50) / 100
	canary := share - stable
	var out []*networkingv1alpha3.HTTPRouteDestination
	for _, p := range []struct {
		subset string
		weight int32
	}{{t.StableSubset, stable}, {t.CanarySubset, canary}} {
		if p.weight == 0 {
			continue
		}
		d := proto.Clone(tmpl).(*networkingv1alpha3.HTTPRouteDestination)
		d.Destination.Subset = p.subset
		d.Weight = p.weight
		out = append(out, d)
	}
	if len(out) == 0 { // share 0: keep the route valid, on stable
		d := proto.Clone(tmpl).(*networkingv1alpha3.HTTPRouteDestination)
		d.Destination.Subset = t.StableSubset
		d.Weight = 0
		out = append(out, d)
	}
	return out
}

func catchAll(r *networkingv1alpha3.HTTPRoute) bool {
	if len(r.Match) == 0 {
		return true
	}
	for _, m := range r.Match {
		if proto.Equal(m, &networkingv1alpha3.HTTPMatchRequest{}) || (m.Name != "" && proto.Equal(m, &networkingv1alpha3.HTTPMatchRequest{Name: m.Name})) {
			return true
		}
	}
	return false
}

func nameSuffix(r *networkingv1alpha3.HTTPRoute) string {
	if r.Name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", r.Name)
}

// WeightsOf reads the split that vs gives the service: the stable and
// canary subsets' weights summed over every route that goes to the service,
// scaled to 100. ok is false when no route does.
func WeightsOf(vs *networkingv1alpha3.VirtualService, t Target) (split Split, ok bool) {
	var stable, canary int32
	for _, r := range vs.GetHttp() {
		if !catchAll(r) {
			continue // weights of matched routes depend on traffic; report the default route
		}
		for _, d := range r.Route {
			if !t.ours(d.Destination) {
				continue
			}
			switch d.Destination.Subset {
			case t.StableSubset:
				stable += effectiveWeight(r, d)
			case t.CanarySubset:
				canary += effectiveWeight(r, d)
			}
		}
		break
	}
	if stable+canary == 0 {
		return Split{}, false
	}
	c := (canary*100 + (stable+canary)/2) / (stable + canary)
	return SplitFor(c), true
}

// MergeDestinationRule returns dr with the stable and canary subsets set:
// a subset of the same name is replaced in place, others are appended.
// Other subsets and the traffic policy (locality load balancing, outlier
// detection, TLS…) are kept. A nil subset is left as it is (it must
// already exist). dr is not modified.
func MergeDestinationRule(dr *networkingv1alpha3.DestinationRule, t Target, stable, canary *networkingv1alpha3.Subset) (*networkingv1alpha3.DestinationRule, error) {
	out := &networkingv1alpha3.DestinationRule{}
	if dr != nil {
		out = proto.Clone(dr).(*networkingv1alpha3.DestinationRule)
	}
	if out.Host == "" {
		out.Host = t.Host()
	} else if !HostMatches(out.Host, t.Service, t.Namespace, t.Domain) {
		return nil, fmt.Errorf("DestinationRule is for host %q, not %s", out.Host, t.Host())
	}
	for _, s := range []*networkingv1alpha3.Subset{stable, canary} {
		if s == nil {
			continue
		}
		if len(s.Labels) == 0 {
			return nil, fmt.Errorf("subset %q has no labels; give the labels that select its pods, e.g. version=v2", s.Name)
		}
		replaced := false
		for i, have := range out.Subsets {
			if have.Name == s.Name {
				merged := proto.Clone(have).(*networkingv1alpha3.Subset)
				merged.Labels = s.Labels
				out.Subsets[i] = merged
				replaced = true
			}
		}
		if !replaced {
			out.Subsets = append(out.Subsets, proto.Clone(s).(*networkingv1alpha3.Subset))
		}
	}
	for _, name := range []string{t.StableSubset, t.CanarySubset} {
		if subset(out, name) == nil {
			return nil, fmt.Errorf("DestinationRule for %s has no subset %q; pass its labels (e.g. --%s-labels version=v1) to create it",
				t.Host(), name, map[bool]string{true: "stable", false: "canary"}[name == t.StableSubset])
		}
	}
	return out, nil
}

func subset(dr *networkingv1alpha3.DestinationRule, name string) *networkingv1alpha3.Subset {
	for _, s := range dr.GetSubsets() {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ParseLabels parses "k=v,k2=v2".
func ParseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("labels %q: %q is not key=value; write e.g. version=v2", s, kv)
		}
		out[k] = v
	}
	return out, nil
}
