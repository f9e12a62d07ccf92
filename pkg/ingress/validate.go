package ingress

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// Validate checks a MeshIngress; each error names the field and the fix.
func Validate(mi *v1beta1.MeshIngress) error {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if len(mi.Spec.Hosts) == 0 {
		errs = append(errs, field.Required(spec.Child("hosts"), "list the external host names served, e.g. [shop.example.com]"))
	}
	for i, h := range mi.Spec.Hosts {
		if msgs := validation.IsWildcardDNS1123Subdomain(h); len(msgs) > 0 && len(validation.IsDNS1123Subdomain(h)) > 0 {
			errs = append(errs, field.Invalid(spec.Child("hosts").Index(i), h, "write a DNS name such as shop.example.com or *.example.com"))
		}
	}
	for i, c := range mi.Spec.GatewayClusters {
		if msgs := validation.IsDNS1123Label(c); len(msgs) > 0 {
			errs = append(errs, field.Invalid(spec.Child("gatewayClusters").Index(i), c, "name a member cluster (a DNS label, as in RemoteIstio spec.clusterName)"))
		}
	}
	if len(mi.Spec.Routes) == 0 {
		errs = append(errs, field.Required(spec.Child("routes"), "add at least one route with a service and weights"))
	}
	names := map[string]bool{}
	fallbacks := map[string]string{}
	for i, r := range mi.Spec.Routes {
		p := spec.Child("routes").Index(i)
		if msgs := validation.IsDNS1123Label(r.Name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("name"), r.Name, "name the route with a DNS label, e.g. shop"))
		} else if names[r.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), r.Name))
		}
		names[r.Name] = true
		if r.PathPrefix != "" && r.PathPrefix[0] != '/' {
			errs = append(errs, field.Invalid(p.Child("pathPrefix"), r.PathPrefix, "start the prefix with /"))
		}
		if len(validation.IsDNS1123Label(r.Service.Name)) > 0 {
			errs = append(errs, field.Invalid(p.Child("service", "name"), r.Service.Name, "name the target Service"))
		}
		if len(validation.IsDNS1123Label(r.Service.Namespace)) > 0 {
			errs = append(errs, field.Invalid(p.Child("service", "namespace"), r.Service.Namespace, "give the target Service's namespace"))
		}
		if r.Service.Port < 1 || r.Service.Port > 65535 {
			errs = append(errs, field.Invalid(p.Child("service", "port"), r.Service.Port, "give the Service port, 1-65535"))
		}
		if len(r.Weights) == 0 {
			errs = append(errs, field.Required(p.Child("weights"), "give each cluster's share, e.g. [{cluster: c1, weight: 80}, {cluster: c2, weight: 20}]"))
		}
		sum, seen := int32(0), map[string]bool{}
		for j, w := range r.Weights {
			wp := p.Child("weights").Index(j)
			if len(validation.IsDNS1123Label(w.Cluster)) > 0 {
				errs = append(errs, field.Invalid(wp.Child("cluster"), w.Cluster, "name a member cluster"))
			} else if seen[w.Cluster] {
				errs = append(errs, field.Duplicate(wp.Child("cluster"), w.Cluster))
			}
			seen[w.Cluster] = true
			if w.Weight < 0 || w.Weight > 100 {
				errs = append(errs, field.Invalid(wp.Child("weight"), w.Weight, "give a percentage, 0-100"))
			}
			sum += w.Weight
		}
		if len(r.Weights) > 0 && sum != 100 {
			errs = append(errs, field.Invalid(p.Child("weights"), sum, fmt.Sprintf("weights add up to %d; make them add up to 100", sum)))
		}
		for j, h := range r.HeaderRoutes {
			hp := p.Child("headerRoutes").Index(j)
			if len(validation.IsHTTPHeaderName(h.Name)) > 0 {
				errs = append(errs, field.Invalid(hp.Child("name"), h.Name, "give an HTTP header name, e.g. x-cluster"))
			}
			if h.Value == "" {
				errs = append(errs, field.Required(hp.Child("value"), "give the header value that pins the cluster"))
			}
			if len(validation.IsDNS1123Label(h.Cluster)) > 0 {
				errs = append(errs, field.Invalid(hp.Child("cluster"), h.Cluster, "name a member cluster"))
			}
		}
		for j, f := range r.Fallback {
			if f.From == "" || f.To == "" || f.From == f.To {
				errs = append(errs, field.Invalid(p.Child("fallback").Index(j), f, "give two different regions, e.g. {from: r1, to: r2}"))
			}
		}
		key := hostOf(r.Service, "")
		if prev, ok := fallbacks[key]; ok && prev != fmt.Sprint(r.Fallback) {
			errs = append(errs, field.Invalid(p.Child("fallback"), r.Fallback, "routes to one service share one fallback order; give every route to "+r.Service.Name+"."+r.Service.Namespace+" the same fallback"))
		}
		fallbacks[key] = fmt.Sprint(r.Fallback)
	}
	if len(errs) > 0 {
		return fmt.Errorf("MeshIngress %s/%s: %w", mi.Namespace, mi.Name, errs.ToAggregate())
	}
	return nil
}
