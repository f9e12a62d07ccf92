package rulesync

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshfleet/meshfleet/pkg/locality"
)

// DefaultGroupMin is the number of a namespace's Services that must share
// one rule before they get one namespace-wide rule (Options.GroupMin).
const DefaultGroupMin = 50

// GroupName is the name of the namespace-wide rule of namespace ns:
// "meshfleet-locality.<ns>". A per-Service rule's name has two labels
// after the prefix (locality.RuleName), so the two never collide, and the
// prefix keeps uninstall's recognition (ARCHITECTURE.md decision 21).
func GroupName(ns string) string { return locality.NamePrefix + ns }

// groupOf returns the name of the namespace-wide rule that would cover the
// host of the per-Service rule named name ("" for a namespace-wide rule or
// a name the server does not generate).
func groupOf(name string) string {
	rest, ok := strings.CutPrefix(name, locality.NamePrefix)
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		return GroupName(rest[i+1:])
	}
	return ""
}

// Group turns the per-Service rules of a translation into fewer objects
// for istiod and the API server (pure). In a namespace where min or more
// Services would get the same traffic policy, those Services share one
// rule for the host "*.<namespace>.svc.<domain>" (GroupName); every other
// Service of the namespace keeps its own rule, whose exact host istiod
// prefers to the wildcard (its most specific host match). A namespace is
// grouped only when nothing in it is left alone: a Service skipped for a
// user's DestinationRule or the annotation meshfleet.io/locality: off would
// otherwise fall under the wildcard. A Service without endpoints may (the
// rule changes nothing for it). min ≤ 0 never groups.
//
// It returns the decisions with each grouped Service's Rule replaced by its
// namespace's rule (so the debug view names the object that applies), and
// the rules to write, each once, in decision order.
func Group(res *locality.Result, min int) (*locality.Result, []*locality.Rule, error) {
	out := &locality.Result{Decisions: append([]locality.Decision(nil), res.Decisions...)}
	if min > 0 {
		byNS := map[string][]int{}
		var order []string
		for i, d := range out.Decisions {
			ns, _, _ := strings.Cut(d.Service, "/")
			if _, ok := byNS[ns]; !ok {
				order = append(order, ns)
			}
			byNS[ns] = append(byNS[ns], i)
		}
		for _, ns := range order {
			if err := groupNamespace(out.Decisions, byNS[ns], ns, min); err != nil {
				return nil, nil, err
			}
		}
	}
	seen := map[string]bool{}
	var rules []*locality.Rule
	for _, d := range out.Decisions {
		if d.Rule != nil && !seen[d.Rule.Metadata.Name] {
			seen[d.Rule.Metadata.Name] = true
			rules = append(rules, d.Rule)
		}
	}
	return out, rules, nil
}

// groupNamespace groups the decisions at idx (one namespace's) in place,
// if the namespace qualifies.
func groupNamespace(ds []locality.Decision, idx []int, ns string, min int) error {
	if len(idx) < min {
		return nil
	}
	var suffix string // ".<ns>.svc.<domain>"
	keys := make([]string, len(idx))
	count := map[string]int{}
	first := map[string]int{} // key → index into idx of its first rule
	byPolicy := map[*networking.TrafficPolicy]string{}
	for j, i := range idx {
		d := ds[i]
		if d.Rule == nil && d.Skipped != locality.SkipNoEndpoints {
			return nil // left alone: a wildcard would take it
		}
		_, name, _ := strings.Cut(d.Service, "/")
		s, ok := strings.CutPrefix(d.Host, name)
		if !ok || !strings.HasPrefix(s, "."+ns+".svc.") || (suffix != "" && s != suffix) {
			return nil // a host the wildcard would not name alone
		}
		suffix = s
		if d.Rule == nil {
			continue
		}
		if d.Rule.Spec.GetHost() != d.Host || len(d.Rule.Spec.GetSubsets()) > 0 || len(d.Rule.Spec.GetExportTo()) > 0 || d.Rule.Spec.GetWorkloadSelector() != nil {
			continue // only the traffic policy can be shared
		}
		tp := d.Rule.Spec.GetTrafficPolicy()
		k, ok := byPolicy[tp] // Translate shares equal policies
		if !ok {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(tp)
			if err != nil {
				return fmt.Errorf("comparing the rule of Service %s: %w", d.Service, err)
			}
			k = string(b)
			byPolicy[tp] = k
		}
		keys[j] = k
		if count[k] == 0 {
			first[k] = j
		}
		count[k]++
	}
	best := ""
	for k, n := range count {
		if n > count[best] || (n == count[best] && first[k] < first[best]) {
			best = k
		}
	}
	if count[best] < min {
		return nil
	}
	tmpl := ds[idx[first[best]]].Rule
	host := "*" + suffix
	group := &locality.Rule{
		APIVersion: tmpl.APIVersion, Kind: tmpl.Kind,
		Metadata: locality.RuleMeta{
			Name:        GroupName(ns),
			Namespace:   tmpl.Metadata.Namespace,
			Labels:      map[string]string{locality.LabelManagedBy: locality.ManagedBy},
			Annotations: map[string]string{locality.AnnotationGenerated: "Services of namespace " + ns + " without a rule of their own"},
		},
		Spec: &networking.DestinationRule{Host: host, TrafficPolicy: tmpl.Spec.GetTrafficPolicy()},
	}
	why := fmt.Sprintf("shares the namespace rule %s (host %s) with the other Services of %s whose rule is the same", group.Metadata.Name, host, ns)
	for j, i := range idx {
		if keys[j] == best {
			d := &ds[i]
			d.Rule = group
			d.Reasons = append(append([]string(nil), d.Reasons...), why)
		}
	}
	return nil
}
