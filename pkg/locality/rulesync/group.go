package rulesync

import (
	"fmt"
	"slices"
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

// splitRuleName splits the name of a rule the server generates into its
// namespace and, for a per-Service rule (perService), its Service; ok is
// false for any other name.
func splitRuleName(name string) (ns, svc string, perService, ok bool) {
	rest, ok := strings.CutPrefix(name, locality.NamePrefix)
	if !ok {
		return "", "", false, false
	}
	if svc, ns, perService = strings.Cut(rest, "."); !perService {
		ns = rest
	}
	return ns, svc, perService, true
}

// Group turns the per-Service rules of a translation into fewer objects
// for istiod and the API server (pure). In a namespace where min or more
// Services would get the same traffic policy, those Services share one
// rule for the host "*.<namespace>.svc.<domain>" (GroupName); every other
// Service of the namespace keeps its own rule, whose exact host istiod
// prefers to the wildcard (its most specific host match). A Service left
// alone there (skipped for a user's DestinationRule or the annotation
// meshfleet.io/locality: off) gets a rule of its own that sets nothing
// (shield), so that the wildcard does not reach it and istiod configures
// it as it would without meshfleet. A Service without endpoints needs
// none (the namespace rule changes nothing for it). min ≤ 0 never groups.
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
	g, err := analyze(ds, idx, ns, min)
	if err != nil || g.best == "" {
		return err
	}
	group := g.rule(ds[idx[g.first]].Rule, ns)
	why := groupReason(group)
	for j, i := range idx {
		d := &ds[i]
		switch {
		case g.keys[j] == g.best:
			d.Rule = group
			d.Reasons = append(slices.Clip(d.Reasons), why)
		case leftAlone(*d):
			shieldFrom(d, group)
		}
	}
	return nil
}

// leftAlone reports whether d is a Service meshfleet steps aside for (a
// user's rule, off), as opposed to one without endpoints.
func leftAlone(d locality.Decision) bool {
	return d.Rule == nil && d.Skipped != "" && d.Skipped != locality.SkipNoEndpoints
}

// shieldFrom gives d, a Service left alone in a namespace whose Services
// share group, its shield: a rule for its exact host that sets nothing.
// istiod takes the most specific host in a namespace, so the shield and
// not group applies to the host from the rules namespace, and it applies
// nothing. Wherever istiod looks first (the client's namespace, then the
// Service's) a user's rule still wins; one in the rules namespace for
// the same host is merged with the shield, and istiod keeps the first
// top-level traffic policy it finds, the user's, as the shield has none.
func shieldFrom(d *locality.Decision, group *locality.Rule) {
	ns, name, _ := strings.Cut(d.Service, "/")
	d.Rule = &locality.Rule{
		APIVersion: group.APIVersion, Kind: group.Kind,
		Metadata: locality.RuleMeta{
			Name:      locality.RuleName(ns, name),
			Namespace: group.Metadata.Namespace,
			Labels:    map[string]string{locality.LabelManagedBy: locality.ManagedBy},
			Annotations: map[string]string{locality.AnnotationGenerated: "Service " + d.Service +
				", left alone: keeps " + group.Metadata.Name + " from applying to it"},
		},
		Spec: &networking.DestinationRule{Host: d.Host},
	}
	d.Reasons = append(slices.Clip(d.Reasons), fmt.Sprintf("left alone (skipped): its rule %s sets nothing and keeps the namespace rule %s (host %s) from applying to it",
		d.Rule.Metadata.Name, group.Metadata.Name, group.Spec.GetHost()))
}

// grouping is what analyze finds in one namespace: whether it may be
// grouped (suffix set), each decision's policy key ("" for a decision
// whose rule cannot be shared), how many share each key, the key most
// share (best; "" when fewer than min do) and its first decision.
type grouping struct {
	suffix string // ".<ns>.svc.<domain>"; "" when the namespace may not be grouped
	keys   []string
	count  map[string]int
	best   string
	first  int // index into idx of best's first decision
}

// analyze finds how the decisions at idx (one namespace's) would group.
func analyze(ds []locality.Decision, idx []int, ns string, min int) (grouping, error) {
	g := grouping{keys: make([]string, len(idx)), count: map[string]int{}}
	if len(idx) < min {
		return grouping{}, nil
	}
	first := map[string]int{} // key → index into idx of its first rule
	byPolicy := map[*networking.TrafficPolicy]string{}
	for j, i := range idx {
		d := ds[i]
		suffix, ok := groupable(d, ns)
		if !ok || (g.suffix != "" && suffix != g.suffix) {
			return grouping{}, nil // a host the wildcard would not name alone
		}
		g.suffix = suffix
		k, err := policyKey(d, byPolicy)
		if err != nil {
			return grouping{}, err
		}
		if k == "" {
			continue
		}
		g.keys[j] = k
		if g.count[k] == 0 {
			first[k] = j
		}
		g.count[k]++
	}
	best := ""
	for k, n := range g.count {
		if n > g.count[best] || (n == g.count[best] && first[k] < first[best]) {
			best = k
		}
	}
	if g.count[best] >= min {
		g.best, g.first = best, first[best]
	}
	return g, nil
}

// groupable returns the host suffix ".<ns>.svc.<domain>" of a decision of
// namespace ns, and false when its namespace must not be grouped: its
// host is not one the wildcard would name.
func groupable(d locality.Decision, ns string) (string, bool) {
	_, name, _ := strings.Cut(d.Service, "/")
	s, ok := strings.CutPrefix(d.Host, name)
	if !ok || !strings.HasPrefix(s, "."+ns+".svc.") {
		return "", false
	}
	return s, true
}

// policyKey is the traffic policy of d's rule as deterministic bytes, ""
// when the rule cannot be shared (none, a shield; subsets, exportTo, a
// workload selector or another host). byPolicy caches the keys of the
// policies seen (Translate shares equal policies).
func policyKey(d locality.Decision, byPolicy map[*networking.TrafficPolicy]string) (string, error) {
	if d.Rule == nil || d.Skipped != "" {
		return "", nil // no rule, or a shield
	}
	if d.Rule.Spec.GetHost() != d.Host || len(d.Rule.Spec.GetSubsets()) > 0 || len(d.Rule.Spec.GetExportTo()) > 0 || d.Rule.Spec.GetWorkloadSelector() != nil {
		return "", nil // only the traffic policy can be shared
	}
	tp := d.Rule.Spec.GetTrafficPolicy()
	if k, ok := byPolicy[tp]; ok {
		return k, nil
	}
	k, err := policyBytes(tp, "Service "+d.Service)
	if err != nil {
		return "", err
	}
	byPolicy[tp] = k
	return k, nil
}

// policyBytes is a traffic policy as deterministic bytes; of names
// whose rule it is, for the error.
func policyBytes(tp *networking.TrafficPolicy, of string) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(tp)
	if err != nil {
		return "", fmt.Errorf("comparing the rule of %s: %w", of, err)
	}
	return string(b), nil
}

// rule is the namespace rule of ns, shaped after tmpl (the first rule
// with the best policy).
func (g grouping) rule(tmpl *locality.Rule, ns string) *locality.Rule {
	return &locality.Rule{
		APIVersion: tmpl.APIVersion, Kind: tmpl.Kind,
		Metadata: locality.RuleMeta{
			Name:        GroupName(ns),
			Namespace:   tmpl.Metadata.Namespace,
			Labels:      map[string]string{locality.LabelManagedBy: locality.ManagedBy},
			Annotations: map[string]string{locality.AnnotationGenerated: "Services of namespace " + ns + " without a rule of their own"},
		},
		Spec: &networking.DestinationRule{Host: "*" + g.suffix, TrafficPolicy: tmpl.Spec.GetTrafficPolicy()},
	}
}

// groupReason is the reason added to a decision that shares group.
func groupReason(group *locality.Rule) string {
	ns := strings.TrimPrefix(group.Metadata.Name, locality.NamePrefix)
	return fmt.Sprintf("shares the namespace rule %s (host %s) with the other Services of %s whose rule is the same", group.Metadata.Name, group.Spec.GetHost(), ns)
}
