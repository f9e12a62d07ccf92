package ingress

import (
	"fmt"
	"strconv"
	"strings"

	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// ParseWeights parses "c1=80,c2=20" (a trailing % allowed) into weights.
// pkg/canary's Split is a two-way stable/canary split; an ingress route
// divides over any number of clusters, so it has its own form.
func ParseWeights(s string) ([]v1beta1.ClusterWeight, error) {
	var out []v1beta1.ClusterWeight
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		c, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("weights %q: %q is not cluster=percent; write e.g. c1=80,c2=20", s, f)
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), "%"), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("weights %q: %q is not a whole percentage; write e.g. c1=80,c2=20", s, v)
		}
		out = append(out, v1beta1.ClusterWeight{Cluster: strings.TrimSpace(c), Weight: int32(n)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("weights %q: none given; write e.g. c1=80,c2=20", s)
	}
	return out, nil
}

// SetWeights returns a copy of mi whose route (by name; "" when mi has one
// route) has the given weights, validated.
func SetWeights(mi *v1beta1.MeshIngress, route string, w []v1beta1.ClusterWeight) (*v1beta1.MeshIngress, error) {
	out := mi.DeepCopy()
	i := -1
	for j, r := range out.Spec.Routes {
		if r.Name == route || (route == "" && len(out.Spec.Routes) == 1) {
			i = j
		}
	}
	if i < 0 {
		var names []string
		for _, r := range out.Spec.Routes {
			names = append(names, r.Name)
		}
		return nil, fmt.Errorf("MeshIngress %s/%s has no route %q; name one of %s", mi.Namespace, mi.Name, route, strings.Join(names, ", "))
	}
	out.Spec.Routes[i].Weights = w
	if err := Validate(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Describe prints where each route's traffic goes, one line per route
// and header pin.
func Describe(mi *v1beta1.MeshIngress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "MeshIngress %s/%s hosts %s entry %s\n", mi.Namespace, mi.Name, strings.Join(mi.Spec.Hosts, ","), orAll(mi.Spec.GatewayClusters))
	for _, r := range mi.Spec.Routes {
		prefix := r.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		target := fmt.Sprintf("%s.%s:%d", r.Service.Name, r.Service.Namespace, r.Service.Port)
		for _, h := range r.HeaderRoutes {
			fmt.Fprintf(&b, "  %s %s header %s=%s -> %s in %s (then nearest healthy)\n", r.Name, prefix, h.Name, h.Value, target, h.Cluster)
		}
		var ws []string
		for _, w := range r.Weights {
			ws = append(ws, fmt.Sprintf("%s %d%%", w.Cluster, w.Weight))
		}
		fb := "nearest healthy"
		if len(r.Fallback) > 0 {
			var fs []string
			for _, f := range r.Fallback {
				fs = append(fs, f.From+"->"+f.To)
			}
			fb = "regions " + strings.Join(fs, ",")
		}
		fmt.Fprintf(&b, "  %s %s -> %s: %s (fallback: %s)\n", r.Name, prefix, target, strings.Join(ws, ", "), fb)
	}
	return b.String()
}

func orAll(cs []string) string {
	if len(cs) == 0 {
		return "every cluster"
	}
	return strings.Join(cs, ",")
}

// VirtualServiceName is the name of the VirtualService rendered for the
// MeshIngress name (in render.GatewayNamespace).
func VirtualServiceName(name string) string { return "meshingress-" + name }

// Served prints the routes of a rendered VirtualService as istiod reads
// them: per HTTP route its match and each destination's cluster and weight.
func Served(vs *clientnetworkingv1.VirtualService) string {
	var b strings.Builder
	for _, r := range vs.Spec.Http {
		var match []string
		for _, m := range r.Match {
			for k, v := range m.Headers {
				match = append(match, fmt.Sprintf("header %s=%s", k, v.GetExact()))
			}
		}
		var ds []string
		for _, d := range r.Route {
			w := d.Weight
			if w == 0 && len(r.Route) == 1 {
				w = 100
			}
			ds = append(ds, fmt.Sprintf("%s %d%%", strings.TrimPrefix(d.Destination.GetSubset(), "cluster-"), w))
		}
		m := ""
		if len(match) > 0 {
			m = " (" + strings.Join(match, ", ") + ")"
		}
		fmt.Fprintf(&b, "  served: %s%s -> %s\n", r.Name, m, strings.Join(ds, ", "))
	}
	return b.String()
}
