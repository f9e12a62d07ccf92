package rulesync

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// Ready is the set of regions where one Service has ready endpoints.
type Ready map[string]bool

// ReadyOf returns the regions where svc has ready endpoints.
func ReadyOf(svc topology.Service) Ready {
	out := Ready{}
	for _, e := range svc.Endpoints {
		if e.Locality.Region != "" && e.Ready > 0 {
			out[e.Locality.Region] = true
		}
	}
	return out
}

// Deferrable reports whether the update of a rule from old (as written)
// to new may wait for the hold-down (Options.HoldDown) without changing
// where any request goes now, given, for each Service the rule applies to
// (one for a per-Service rule, every Service sharing a namespace rule), the
// regions where it has ready endpoints. It is pure; when it is not
// deferrable it says why (the first urgent difference).
//
// A failover entry "from X to T" only ranks the other regions for clients
// in X once X has no ready endpoints: istiod gives T's endpoints the next
// priority after X's own and every other region one shared priority below
// (it drops no region). So an update that changes nothing but failover
// targets may wait when, for every Service and every changed entry, either
//   - X has ready endpoints: X's clients are served in X (the entry is
//     dormant), or
//   - the old and the new entry rank the ready regions alike: neither
//     target has ready endpoints (both rank every ready region together),
//     or fewer than two regions other than X have any (there is no order
//     to choose).
//
// This is the change readiness alone makes to other regions' entries when
// one region loses or regains its last ready endpoint (the nearest region
// with ready endpoints moves); the failover itself is istiod's push of the
// endpoint change, which the rule's write would otherwise delay. Anything
// else is urgent: a different name, namespace, host, annotation or any
// other field of the rule (a user's policy or annotation, a traffic
// distribution), and an entry whose change moves the traffic of a region
// without ready endpoints.
func Deferrable(old, new *locality.Rule, ready []Ready) (bool, string) {
	if old == nil || new == nil || old.Spec == nil || new.Spec == nil {
		return false, "a rule is new or gone"
	}
	if len(ready) == 0 {
		return false, "no Service with endpoints under the rule"
	}
	om, nm := old.Metadata, new.Metadata
	if om.Name != nm.Name || om.Namespace != nm.Namespace ||
		om.Labels[locality.LabelManagedBy] != nm.Labels[locality.LabelManagedBy] ||
		om.Annotations[locality.AnnotationGenerated] != nm.Annotations[locality.AnnotationGenerated] {
		return false, "metadata changed"
	}
	return deferrableSpec(old.Spec, new.Spec, ready)
}

// DeferrableMove is Deferrable for a Service that moves between its own
// rule and its namespace's rule (it leaves or rejoins the group: Group):
// from is the rule that applies to it now, to the one that will, and
// ready its regions with ready endpoints. Only their traffic policies may
// differ (the hosts do, exact and wildcard), as Deferrable allows.
func DeferrableMove(from, to *locality.Rule, ready Ready) (bool, string) {
	if from == nil || to == nil || from.Spec == nil || to.Spec == nil {
		return false, "a rule is missing"
	}
	for _, r := range []*locality.Rule{from, to} {
		if len(r.Spec.GetSubsets()) > 0 || len(r.Spec.GetExportTo()) > 0 || r.Spec.GetWorkloadSelector() != nil || r.Metadata.Annotations[locality.AnnotationMergedWith] != "" {
			return false, "rule " + r.Metadata.Name + " has more than a traffic policy"
		}
	}
	return deferrableSpec(&networking.DestinationRule{TrafficPolicy: from.Spec.GetTrafficPolicy()},
		&networking.DestinationRule{TrafficPolicy: to.Spec.GetTrafficPolicy()}, []Ready{ready})
}

// deferrableSpec is Deferrable's judgement of two specs.
func deferrableSpec(old, new *networking.DestinationRule, ready []Ready) (bool, string) {
	oldTo, oldRest := splitFailover(old)
	newTo, newRest := splitFailover(new)
	if !proto.Equal(oldRest, newRest) {
		return false, "not only failover targets changed"
	}
	froms := maps.Clone(oldTo)
	maps.Copy(froms, newTo)
	for _, from := range slices.Sorted(maps.Keys(froms)) {
		a, b := oldTo[from], newTo[from]
		if a == b {
			continue
		}
		for _, r := range ready {
			if !sameRanking(from, a, b, r) {
				return false, fmt.Sprintf("failover from %s: %s → %s moves traffic of a region without ready endpoints", from, orNone(a), orNone(b))
			}
		}
	}
	return true, ""
}

// sameRanking reports whether the failover entries from → a and from → b
// send the traffic of from's clients to the same ready regions in the same
// order, for a Service ready in the regions r ("" is no entry).
func sameRanking(from, a, b string, r Ready) bool {
	if r[from] {
		return true // served in from: the entry is not used
	}
	if !r[a] && !r[b] {
		return true // neither target is preferred: every ready region together
	}
	others := 0
	for region, ok := range r {
		if ok && region != from {
			others++
		}
	}
	return others < 2
}

// splitFailover returns a rule's failover entries (from → to) and a copy
// of its spec without them. Entries with the same from keep the first.
func splitFailover(spec *networking.DestinationRule) (map[string]string, *networking.DestinationRule) {
	rest := proto.Clone(spec).(*networking.DestinationRule)
	to := map[string]string{}
	lb := rest.GetTrafficPolicy().GetLoadBalancer().GetLocalityLbSetting()
	if lb == nil {
		return to, rest
	}
	for _, f := range lb.GetFailover() {
		if _, ok := to[f.GetFrom()]; !ok {
			to[f.GetFrom()] = f.GetTo()
		}
	}
	lb.Failover = nil
	return to, rest
}

// ruleOf reads a live object back into the rule it was written from (the
// fields ObjectHash covers), for Deferrable.
func ruleOf(u *unstructured.Unstructured) (*locality.Rule, error) {
	raw, err := json.Marshal(u.Object["spec"])
	if err != nil {
		return nil, fmt.Errorf("reading DestinationRule %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	spec := &networking.DestinationRule{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, spec); err != nil {
		return nil, fmt.Errorf("reading DestinationRule %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &locality.Rule{
		APIVersion: u.GetAPIVersion(), Kind: u.GetKind(),
		Metadata: locality.RuleMeta{Name: u.GetName(), Namespace: u.GetNamespace(), Labels: u.GetLabels(), Annotations: u.GetAnnotations()},
		Spec:     spec,
	}, nil
}

func orNone(region string) string { return cmp.Or(region, "(none)") }

// readyIndex finds the Services of a topology by key, for their ready
// regions.
type readyIndex struct {
	t *topology.Topology
}

// service returns the regions where Service key has ready endpoints.
func (x *readyIndex) service(key string) (Ready, bool) {
	svc, ok := x.t.ServiceByKey(key)
	if !ok {
		return nil, false
	}
	return ReadyOf(svc), true
}

// serviceOf is the Service key a per-Service rule name stands for ("" for
// a namespace rule or another name).
func serviceOf(name string) string {
	ns, svc, perService, ok := splitRuleName(name)
	if !ok || !perService {
		return ""
	}
	return ns + "/" + svc
}

// of returns the distinct ready-region sets of the Services whose
// decision in pl uses the rule named name (the Service of a per-Service
// rule, every Service sharing a namespace rule), and their keys; nil when
// none is found.
func (x *readyIndex) of(pl *placed, name string) ([]Ready, []string) {
	ns, svc, perService, ok := splitRuleName(name)
	if !ok || pl == nil {
		return nil, nil
	}
	r := pl.byNS[ns]
	if r == nil {
		return nil, nil
	}
	var keys []string
	if perService {
		if i, ok := findDecision(r.decisions, ns+"/"+svc); ok && r.decisions[i].Rule != nil && r.decisions[i].Rule.Metadata.Name == name {
			keys = append(keys, r.decisions[i].Service)
		}
	} else {
		for _, d := range r.decisions {
			if d.Rule != nil && d.Rule.Metadata.Name == name {
				keys = append(keys, d.Service)
			}
		}
	}
	var out []Ready
	seen := map[string]bool{}
	for _, k := range keys {
		ready, ok := x.service(k)
		if !ok {
			return nil, nil // translated from a Service the topology lacks: do not guess
		}
		id := strings.Join(slices.Sorted(maps.Keys(ready)), ",")
		if !seen[id] {
			seen[id] = true
			out = append(out, ready)
		}
	}
	return out, keys
}

// settingsOf fingerprints what a Service's own decision depends on besides
// its endpoints: its host, its meshfleet.io/ annotations and its traffic
// distribution. A change of them is the user's, written at once.
func settingsOf(svc topology.Service) string {
	var b strings.Builder
	b.WriteString(svc.Hostname + "\x00" + svc.TrafficDistribution + "\x00" + svc.TrafficDistributionFrom)
	for _, k := range slices.Sorted(maps.Keys(svc.Annotations)) {
		b.WriteString("\x00" + k + "=" + svc.Annotations[k])
	}
	return b.String()
}

// settingsChanged updates known (Service key → settingsOf) for the
// topology t, which differs from the one known was built from by the
// Services d names (any if d.All), and returns the Services that are new
// or whose settings changed.
func settingsChanged(known map[string]string, t *topology.Topology, d topology.Delta) map[string]bool {
	changed := map[string]bool{}
	if d.All {
		seen := make(map[string]bool, len(t.Services))
		for _, svc := range t.Services {
			k := svc.Key()
			seen[k] = true
			if s := settingsOf(svc); known[k] != s {
				known[k] = s
				changed[k] = true
			}
		}
		maps.DeleteFunc(known, func(k, _ string) bool { return !seen[k] })
		return changed
	}
	for _, k := range d.Services {
		svc, ok := t.ServiceByKey(k)
		if !ok {
			delete(known, k)
			continue
		}
		if s := settingsOf(svc); known[k] != s {
			known[k] = s
			changed[k] = true
		}
	}
	return changed
}
