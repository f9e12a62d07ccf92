package rulesync

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// placed is a translation placed into the rules namespace (Place) and
// grouped (Group), kept per namespace of the Services so that a change of
// some Services places and groups those Services only: a namespace is
// grouped again from scratch only when its grouping changes (it becomes
// grouped or stops being, its shared policy changes, or a tie makes the
// choice depend on the order). A value is never changed once built:
// update returns a new one that shares what it did not redo.
type placed struct {
	rulesNamespace string
	groupMin       int
	byNS           map[string]*nsRules
}

// nsRules is one namespace's decisions, placed and grouped, and what its
// grouping was decided from: the number of decisions per shareable
// policy (counts), per host suffix (suffixes), those whose host the
// namespace rule would not name (blockers), and its namespace rule (group,
// nil when not grouped) with the policy key it shares (best).
type nsRules struct {
	decisions []locality.Decision
	counts    map[string]int
	suffixes  map[string]int
	blockers  int
	group     *locality.Rule
	best      string
}

// update returns p for the translation res, which differs from the one p
// was built from by the Services d names (all if d.All), and the names of
// the rules that may differ (nil when d.All: any may).
func (p *placed) update(res *locality.Result, d topology.Delta) (*placed, map[string]bool, error) {
	out := &placed{rulesNamespace: p.rulesNamespace, groupMin: p.groupMin, byNS: maps.Clone(p.byNS)}
	if d.All {
		out.byNS = map[string]*nsRules{}
		for i := 0; i < len(res.Decisions); {
			ns := namespaceOf(res.Decisions[i].Service)
			ds := decisionsOf(res.Decisions, ns)
			r, err := out.build(ds, ns)
			if err != nil {
				return nil, nil, err
			}
			out.byNS[ns] = r
			i += len(ds)
		}
		return out, nil, nil
	}
	byNS := map[string][]string{}
	for _, k := range d.Services {
		ns := namespaceOf(k)
		byNS[ns] = append(byNS[ns], k)
	}
	affected := map[string]bool{}
	for ns, keys := range byNS {
		ds := decisionsOf(res.Decisions, ns)
		prev := p.byNS[ns]
		if len(ds) == 0 {
			delete(out.byNS, ns)
			if prev != nil {
				prev.names(affected)
			}
			continue
		}
		r, ok, err := out.patch(prev, ds, ns, keys, affected)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			if r, err = out.build(ds, ns); err != nil {
				return nil, nil, err
			}
			if prev != nil {
				prev.names(affected)
			}
			r.names(affected)
		}
		out.byNS[ns] = r
	}
	return out, affected, nil
}

// build places and groups one namespace's decisions from scratch.
func (p *placed) build(ds []locality.Decision, ns string) (*nsRules, error) {
	g, _, err := Group(Place(&locality.Result{Decisions: ds}, p.rulesNamespace), p.groupMin)
	if err != nil {
		return nil, err
	}
	r := &nsRules{decisions: g.Decisions, counts: map[string]int{}, suffixes: map[string]int{}}
	for _, d := range r.decisions {
		if d.Rule != nil && d.Rule.Metadata.Name == GroupName(ns) {
			r.group = d.Rule
			break
		}
	}
	byPolicy := map[*networking.TrafficPolicy]string{}
	if r.group != nil {
		if r.best, err = policyBytes(r.group.Spec.GetTrafficPolicy(), ns); err != nil {
			return nil, err
		}
	}
	for _, d := range r.decisions {
		k, err := r.classify(d, ns, byPolicy)
		if err != nil {
			return nil, err
		}
		r.add(d, ns, k, 1)
	}
	return r, nil
}

// classify returns the policy key of a placed decision of ns (policyKey;
// the shared one for a decision under the namespace rule).
func (r *nsRules) classify(d locality.Decision, ns string, byPolicy map[*networking.TrafficPolicy]string) (string, error) {
	if d.Rule != nil && d.Rule == r.group {
		return r.best, nil
	}
	return policyKey(d, byPolicy)
}

// add counts decision d of ns (by n: 1 or -1) with its policy key k.
func (r *nsRules) add(d locality.Decision, ns, k string, n int) {
	if suffix, ok := groupable(d, ns); ok {
		r.suffixes[suffix] += n
		if r.suffixes[suffix] == 0 {
			delete(r.suffixes, suffix)
		}
	} else {
		r.blockers += n
	}
	if k != "" {
		r.counts[k] += n
		if r.counts[k] == 0 {
			delete(r.counts, k)
		}
	}
}

// patch updates prev for the Services keys of namespace ns, whose
// decisions are ds now, without grouping the namespace again; false when
// it cannot (the grouping changes: then build).
func (p *placed) patch(prev *nsRules, ds []locality.Decision, ns string, keys []string, affected map[string]bool) (*nsRules, bool, error) {
	if prev == nil || (prev.group != nil && prev.group.Metadata.Namespace != p.rulesNamespace) {
		return nil, false, nil
	}
	r := &nsRules{decisions: slices.Clone(prev.decisions), counts: maps.Clone(prev.counts), suffixes: maps.Clone(prev.suffixes),
		blockers: prev.blockers, group: prev.group, best: prev.best}
	byPolicy := map[*networking.TrafficPolicy]string{}
	type change struct {
		key    string
		d      *locality.Decision // placed, nil when the Service is gone
		policy string
	}
	var changes []change
	for _, key := range keys {
		if i, ok := findDecision(prev.decisions, key); ok {
			o := prev.decisions[i]
			k, err := prev.classify(o, ns, byPolicy)
			if err != nil {
				return nil, false, err
			}
			r.add(o, ns, k, -1)
			if o.Rule != nil {
				affected[o.Rule.Metadata.Name] = true
			}
		}
		c := change{key: key}
		if i, ok := findDecision(ds, key); ok {
			d := Place(&locality.Result{Decisions: ds[i : i+1]}, p.rulesNamespace).Decisions[0]
			if d.Rule != nil && d.Rule.Metadata.Annotations[locality.AnnotationMergedWith] != "" {
				return nil, false, nil // a rule in another namespace could become the namespace rule's template
			}
			k, err := policyKey(d, byPolicy)
			if err != nil {
				return nil, false, err
			}
			r.add(d, ns, k, 1)
			c.d, c.policy = &d, k
		}
		changes = append(changes, c)
	}
	// The grouping must stay what it was: the same shared policy, the
	// most shared without a tie (a tie is decided by order), or none.
	best := ""
	if p.groupMin > 0 && len(ds) >= p.groupMin && r.blockers == 0 && len(r.suffixes) == 1 {
		for k, n := range r.counts {
			switch {
			case n > r.counts[best]:
				best = k
			case n == r.counts[best]:
				if n >= p.groupMin {
					return nil, false, nil
				}
			}
		}
		if r.counts[best] < p.groupMin {
			best = ""
		}
	}
	if best != prev.best || (best != "" && prev.group == nil) {
		return nil, false, nil
	}
	for _, c := range changes {
		i, found := findDecision(r.decisions, c.key)
		if c.d == nil {
			if found {
				r.decisions = slices.Delete(r.decisions, i, i+1)
			}
			continue
		}
		d := *c.d
		switch {
		case r.group != nil && c.policy == r.best:
			d.Rule = r.group
			d.Reasons = append(slices.Clip(d.Reasons), groupReason(r.group))
		case r.group != nil && leftAlone(d):
			shieldFrom(&d, r.group)
		}
		if d.Rule != nil {
			affected[d.Rule.Metadata.Name] = true
		}
		if found {
			r.decisions[i] = d
		} else {
			r.decisions = slices.Insert(r.decisions, i, d)
		}
	}
	return r, true, nil
}

// names adds the names of r's rules to set.
func (r *nsRules) names(set map[string]bool) {
	for _, d := range r.decisions {
		if d.Rule != nil {
			set[d.Rule.Metadata.Name] = true
		}
	}
}

// findDecision finds the decision of Service key in ds (sorted).
func findDecision(ds []locality.Decision, key string) (int, bool) {
	return slices.BinarySearchFunc(ds, key, func(d locality.Decision, k string) int { return cmp.Compare(d.Service, k) })
}

// namespaceOf is the namespace of a Service key namespace/name.
func namespaceOf(key string) string {
	ns, _, _ := strings.Cut(key, "/")
	return ns
}

// decisionsOf returns the decisions of namespace ns: decisions are sorted
// by namespace/name, so they are one run, found by binary search.
func decisionsOf(ds []locality.Decision, ns string) []locality.Decision {
	prefix := ns + "/"
	from, _ := slices.BinarySearchFunc(ds, prefix, func(d locality.Decision, k string) int { return cmp.Compare(d.Service, k) })
	to := from
	for to < len(ds) && strings.HasPrefix(ds[to].Service, prefix) {
		to++
	}
	return ds[from:to]
}

// namespaces returns p's namespaces in the order of their decisions
// (namespace/name sorted as strings: "a-b/x" before "a/x").
func (p *placed) namespaces() []string {
	return slices.SortedFunc(maps.Keys(p.byNS), func(a, b string) int { return cmp.Compare(a+"/", b+"/") })
}

// result is what Group(Place(res)) returns for the whole translation: the
// decisions and the rules to write, each once, in decision order.
func (p *placed) result() (*locality.Result, []*locality.Rule) {
	out := &locality.Result{}
	var rules []*locality.Rule
	seen := map[string]bool{}
	for _, ns := range p.namespaces() {
		for _, d := range p.byNS[ns].decisions {
			out.Decisions = append(out.Decisions, d)
			if d.Rule != nil && !seen[d.Rule.Metadata.Name] {
				seen[d.Rule.Metadata.Name] = true
				rules = append(rules, d.Rule)
			}
		}
	}
	return out, rules
}

// ruleNamed returns the rule named name that p writes, or nil.
func (p *placed) ruleNamed(name string) *locality.Rule {
	ns, svc, perService, ok := splitRuleName(name)
	if !ok {
		return nil
	}
	r := p.byNS[ns]
	if r == nil {
		return nil
	}
	if !perService {
		return r.group
	}
	if i, ok := findDecision(r.decisions, ns+"/"+svc); ok && r.decisions[i].Rule != nil && r.decisions[i].Rule.Metadata.Name == name {
		return r.decisions[i].Rule
	}
	return nil
}

// Place moves every generated rule into the rules namespace, but for
// rules to be merged into a user's rule (locality.AnnotationMergedWith),
// which stay in that rule's namespace. It changes no rule of res.
func Place(res *locality.Result, rulesNamespace string) *locality.Result {
	out := &locality.Result{Decisions: make([]locality.Decision, len(res.Decisions))}
	for i, d := range res.Decisions {
		if d.Rule != nil {
			r := *d.Rule
			if r.Metadata.Annotations[locality.AnnotationMergedWith] == "" {
				r.Metadata.Namespace = rulesNamespace
			}
			d.Rule = &r
		}
		out.Decisions[i] = d
	}
	return out
}
