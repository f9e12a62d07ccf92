package locality

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshfleet/meshfleet/pkg/topology"
)

// Labels and annotations on generated rules.
const (
	LabelManagedBy = topology.LabelManagedBy
	// ManagedBy marks the rules the locality server writes (and no other
	// object: the operator's objects say "meshfleet"), so that it prunes
	// only its own rules and never counts them as users' rules.
	ManagedBy           = topology.ManagedByLocality
	AnnotationGenerated = "meshfleet.io/generated-for"
	// NamePrefix starts the name of every generated DestinationRule.
	NamePrefix = "meshfleet-locality."
	// AnnotationMergedWith marks a rule written beside a user's
	// DestinationRule that has subsets only (namespace/name), in its
	// namespace, for istiod to merge into it; such a rule is not moved
	// into the server's rules namespace.
	AnnotationMergedWith = "meshfleet.io/merged-with"
)

// RuleName is the name of the rule generated for Service namespace/name:
// "meshfleet-locality.<name>.<namespace>". Service and namespace names are
// DNS labels (no dots), so two Services never share a rule name, even when
// every rule is written into one namespace.
func RuleName(namespace, name string) string {
	return NamePrefix + name + "." + namespace
}

// SkipNoEndpoints is Decision.Skipped for a Service without endpoints in
// any cluster (and no other reason to skip it): no rule is needed, but a
// namespace-wide rule covering it does no harm (rulesync.Group).
const SkipNoEndpoints = "no endpoints in any cluster"

// Result is the output of Translate.
type Result struct {
	// Decisions holds one entry per Service, sorted by namespace/name.
	Decisions []Decision `json:"decisions"`

	// base is what TranslateDelta needs to translate a change of some
	// Services only; nil once a TranslateDelta has taken it.
	base *base
	// inputs is the fingerprint of what every decision depends on
	// besides the Services (Inputs).
	inputs string
}

// Inputs fingerprints what, besides the Services, every decision of r
// depends on: the policy, the config cluster, the users'
// DestinationRules and the nodes' regions. Two results with different
// inputs differ in every decision's grounds; TranslateDelta translates
// everything when they change.
func (r *Result) Inputs() string { return r.inputs }

// Decision is what was generated for one Service, and why.
type Decision struct {
	Service string `json:"service"`
	Host    string `json:"host"`
	// Rule is the generated DestinationRule; nil when Skipped says why not.
	Rule    *Rule  `json:"rule,omitempty"`
	Skipped string `json:"skipped,omitempty"`
	// Reasons explain each failover entry: the order and where it came from.
	Reasons []string `json:"reasons,omitempty"`
	// Warnings report per-service settings that were ignored, and the fix.
	Warnings []string `json:"warnings,omitempty"`
	// DuplicateLocalities report localities istiod would send twice in one
	// EDS response for the host (topology.Service.DuplicateLocalities),
	// which proxyless gRPC clients reject, and the fix. They do not depend
	// on the rule: they are reported for skipped services too.
	DuplicateLocalities []string `json:"duplicateLocalities,omitempty"`
}

// Rule is a generated DestinationRule, shaped like the Kubernetes object.
type Rule struct {
	APIVersion string                      `json:"apiVersion"`
	Kind       string                      `json:"kind"`
	Metadata   RuleMeta                    `json:"metadata"`
	Spec       *networking.DestinationRule `json:"spec"`
}

// RuleMeta is a generated rule's metadata.
type RuleMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Rules returns the generated rules, in Decisions order.
func (r *Result) Rules() []*Rule {
	var out []*Rule
	for _, d := range r.Decisions {
		if d.Rule != nil {
			out = append(out, d.Rule)
		}
	}
	return out
}

// Translate turns the topology and policy into DestinationRules. It is pure
// and deterministic: equal inputs give equal outputs.
func Translate(t *topology.Topology, p Policy) (*Result, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	b := newBase(t, p)
	out := &Result{Decisions: make([]Decision, 0, len(t.Services)), base: b, inputs: b.inputs}
	services := append([]topology.Service(nil), t.Services...)
	sort.Slice(services, func(i, j int) bool { return services[i].Key() < services[j].Key() })
	for _, svc := range services {
		out.Decisions = append(out.Decisions, b.decide(svc))
	}
	return out, nil
}

// TranslateDelta is Translate for a topology t that differs from the one
// prev was translated from by the Services d names only: it translates
// those Services and keeps prev's decisions for the others, so a change of
// one Service costs the translation of one Service. It returns the result
// (equal to Translate(t, p)'s) and the Services whose decision may have
// changed. It translates everything (and says All) when d is All, the
// policy, the config cluster, the users' DestinationRules or the regions
// changed (every decision depends on them), or prev cannot be built on.
// It takes prev's cached state: prev stays valid to read, but a second
// TranslateDelta from it translates everything.
func TranslateDelta(prev *Result, t *topology.Topology, p Policy, d topology.Delta) (*Result, topology.Delta, error) {
	full := func() (*Result, topology.Delta, error) {
		res, err := Translate(t, p)
		return res, topology.Delta{All: true}, err
	}
	if prev == nil || prev.base == nil || d.All {
		return full()
	}
	b := prev.base
	if b.inputs != inputsOf(t, p) {
		return full()
	}
	if err := p.Validate(); err != nil {
		return nil, topology.Delta{}, fmt.Errorf("policy: %w", err)
	}
	prev.base = nil
	for _, key := range d.Services {
		b.forget(key)
		if svc, ok := t.ServiceByKey(key); ok {
			if svc.Namespace == "" || svc.Name == "" || svc.Hostname == "" {
				return nil, topology.Delta{}, fmt.Errorf("topology: service %s: namespace, name and hostname are required", key)
			}
			b.count(svc)
		}
	}
	if !slices.Equal(b.currentRegions(), b.regions) {
		// Every failover order depends on the regions.
		return full()
	}
	if len(d.Services) == 0 {
		return &Result{Decisions: prev.Decisions, base: b, inputs: b.inputs}, d, nil // results are read-only: share
	}
	out := &Result{Decisions: slices.Clone(prev.Decisions), base: b, inputs: b.inputs}
	for _, key := range d.Services {
		i, found := slices.BinarySearchFunc(out.Decisions, key, func(d Decision, k string) int { return cmp.Compare(d.Service, k) })
		svc, ok := t.ServiceByKey(key)
		switch {
		case ok && found:
			out.Decisions[i] = b.decide(svc)
		case ok:
			out.Decisions = slices.Insert(out.Decisions, i, b.decide(svc))
		case found:
			out.Decisions = slices.Delete(out.Decisions, i, i+1)
		}
	}
	return out, topology.Delta{Services: d.Services}, nil
}

// base is what every Service's decision depends on besides the Service:
// the policy, the regions and their failover orders, the users' rules, and
// the traffic policies computed so far (memo).
type base struct {
	// inputs fingerprints the policy, the config cluster, the users' rules
	// and the nodes' regions (inputsOf).
	inputs  string
	regions []string
	// nodeRegions are the regions of nodes; regionRefs counts, per region,
	// the Services with endpoints there, and svcRegions lists them per
	// Service: the regions follow a change of one Service.
	nodeRegions map[string]bool
	regionRefs  map[string]int
	svcRegions  map[string][]string

	p                   Policy
	od                  OutlierDetection
	meshOrders          Orders
	configCluster       string
	users, ignoredUsers *userHosts
	memo                map[string]generated
}

// inputsOf fingerprints what, besides the Services, every decision depends
// on and a change of one Service cannot change: the policy, the config
// cluster, the users' DestinationRules and the nodes' regions.
func inputsOf(t *topology.Topology, p Policy) string {
	raw, _ := json.Marshal(struct {
		P  Policy                         `json:"p"`
		C  string                         `json:"c"`
		U  []topology.UserDestinationRule `json:"u"`
		NR []string                       `json:"nr"`
	}{p, t.ConfigCluster, t.UserDestinationRules, nodeRegions(t)})
	return string(raw)
}

// nodeRegions returns the regions of t's nodes, sorted.
func nodeRegions(t *topology.Topology) []string {
	set := map[string]bool{}
	for _, c := range t.Clusters {
		for _, n := range c.Nodes {
			if n.Locality.Region != "" {
				set[n.Locality.Region] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func newBase(t *topology.Topology, p Policy) *base {
	b := &base{inputs: inputsOf(t, p), p: p, od: DefaultOutlierDetection(), configCluster: t.ConfigCluster,
		nodeRegions: map[string]bool{}, regionRefs: map[string]int{}, svcRegions: map[string][]string{}, memo: map[string]generated{}}
	if p.OutlierDetection != nil {
		b.od = *p.OutlierDetection
	}
	for _, r := range nodeRegions(t) {
		b.nodeRegions[r] = true
	}
	for _, svc := range t.Services {
		b.count(svc)
	}
	b.regions = b.currentRegions()
	b.meshOrders = ComputeOrders(b.regions, p.Failover, p.Distances)
	// istiod reads DestinationRules only from its config cluster (its
	// crdclient watches the config cluster's API server; remote clusters
	// give it services and endpoints only): users' rules elsewhere do not
	// stop generation, they are reported (ARCHITECTURE.md, "A user's
	// DestinationRule in a remote cluster").
	var effective, elsewhere []topology.UserDestinationRule
	for _, r := range t.UserDestinationRules {
		if t.ConfigCluster == "" || r.Cluster == t.ConfigCluster {
			effective = append(effective, r)
		} else {
			elsewhere = append(elsewhere, r)
		}
	}
	b.users, b.ignoredUsers = newUserHosts(effective), newUserHosts(elsewhere)
	return b
}

// count adds svc's endpoint regions to the region counts.
func (b *base) count(svc topology.Service) {
	var rs []string
	for _, e := range svc.Endpoints {
		if r := e.Locality.Region; r != "" && !slices.Contains(rs, r) {
			rs = append(rs, r)
			b.regionRefs[r]++
		}
	}
	if len(rs) > 0 {
		b.svcRegions[svc.Key()] = rs
	}
}

// forget removes Service key's endpoint regions from the region counts.
func (b *base) forget(key string) {
	for _, r := range b.svcRegions[key] {
		if b.regionRefs[r]--; b.regionRefs[r] == 0 {
			delete(b.regionRefs, r)
		}
	}
	delete(b.svcRegions, key)
}

// currentRegions are the regions of all nodes and endpoints, sorted
// (topology.Topology.Regions).
func (b *base) currentRegions() []string {
	set := maps.Clone(b.nodeRegions)
	for r := range b.regionRefs {
		set[r] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// decide is the decision for one Service.
func (b *base) decide(svc topology.Service) Decision {
	d := Decision{Service: svc.Key(), Host: svc.Hostname}
	var skip []string
	if strings.EqualFold(svc.Annotations[AnnotationLocality], "off") {
		skip = append(skip, fmt.Sprintf("annotation %s: off on Service %s", AnnotationLocality, svc.Key()))
	}
	var mergeInto *topology.UserDestinationRule
	if r, id, exact := b.users.rule(svc.Hostname); id != "" {
		if exact && r.SubsetsOnly && r.Namespace == svc.Namespace {
			mergeInto = &r
		} else {
			skip = append(skip, fmt.Sprintf("user DestinationRule %s covers host %s; user config wins: for locality failover, add trafficPolicy.loadBalancer.localityLbSetting and trafficPolicy.outlierDetection to it, or keep only its subsets (host %s exactly, namespace %s) and meshfleet writes its locality policy beside it", id, svc.Hostname, svc.Hostname, svc.Namespace))
		}
	}
	if id := b.ignoredUsers.covers(svc.Hostname); id != "" {
		d.Warnings = append(d.Warnings, fmt.Sprintf("user DestinationRule %s covers host %s but is not in cluster %s, the only cluster istiod reads DestinationRules from: istiod ignores it, so meshfleet keeps generating; to configure the host yourself, put the rule in %s (meshfleet then steps aside), else delete it", id, svc.Hostname, b.configCluster, b.configCluster))
	}
	if len(skip) == 0 && !hasEndpoints(svc) {
		skip = append(skip, SkipNoEndpoints)
	}
	if len(skip) > 0 {
		d.Skipped = strings.Join(skip, "; ")
	} else {
		generate(&d, svc, b.regions, b.meshOrders, b.p, b.od, b.memo)
		if mergeInto != nil {
			mergeWith(&d, *mergeInto)
		}
	}
	for _, x := range svc.IgnoredTrafficDistribution {
		d.Warnings = append(d.Warnings, fmt.Sprintf("Service %s: %s (the config cluster's copy when it has one); set it there for istiod to apply it", svc.Key(), x))
	}
	for _, dup := range svc.DuplicateLocalities() {
		d.DuplicateLocalities = append(d.DuplicateLocalities, fmt.Sprintf(
			"locality %s reaches istiod as %s: istiod sends it twice in one EDS response, which proxyless gRPC clients reject (every RPC to the service fails Unavailable); fix: give every endpoint of the service its locality from one source (remove the pod locality labels so the Nodes' labels apply, or put the label on every Pod of the service)",
			dup.Locality, strings.Join(dup.Labels, " and ")))
	}
	return d
}

// managedLabels are the labels of every generated rule, one map shared by
// all of them (10,000 rules would hold 10,000 equal maps): read-only.
var managedLabels = map[string]string{LabelManagedBy: ManagedBy}

// generated is the part of a rule that does not name its Service: the
// traffic policy and the reasons for it.
type generated struct {
	policy  *networking.TrafficPolicy
	reasons []string
}

// generate fills d.Rule, d.Reasons and d.Warnings for svc. Services whose
// inputs to the traffic policy are equal (no failover annotation of their
// own, the same traffic distribution, the same regions with ready and with
// any endpoints) share one computed policy through memo: at 10,000
// Services most are alike, and building the policy is most of the cost.
// The shared policy and reasons are never modified.
func generate(d *Decision, svc topology.Service, regions []string, meshOrders Orders, p Policy, od OutlierDetection, memo map[string]generated) {
	d.Rule = &Rule{
		APIVersion: "networking.istio.io/v1",
		Kind:       "DestinationRule",
		Metadata: RuleMeta{
			Name:        RuleName(svc.Namespace, svc.Name),
			Namespace:   svc.Namespace,
			Labels:      managedLabels,
			Annotations: map[string]string{AnnotationGenerated: "Service " + svc.Key()},
		},
	}
	ready, any := map[string]int{}, map[string]int{}
	for _, e := range svc.Endpoints {
		if e.Locality.Region == "" {
			continue
		}
		ready[e.Locality.Region] += e.Ready
		any[e.Locality.Region] += e.Ready + e.NotReady
	}
	key := ""
	if _, own := svc.Annotations[AnnotationFailover]; !own {
		var b strings.Builder
		b.WriteString(svc.TrafficDistribution + "\x00" + svc.TrafficDistributionFrom)
		for _, r := range slices.Sorted(maps.Keys(any)) {
			if any[r] == 0 {
				continue // an endpoint group without addresses: as no endpoints (pickTarget)
			}
			b.WriteString("\x00" + r)
			if ready[r] > 0 {
				b.WriteByte('+')
			}
		}
		key = b.String()
		if g, ok := memo[key]; ok {
			d.Rule.Spec = &networking.DestinationRule{Host: svc.Hostname, TrafficPolicy: g.policy}
			d.Reasons = g.reasons
			return
		}
	}
	var warnings []string
	policy, reasons := trafficPolicy(svc, regions, meshOrders, p, od, ready, any, &warnings)
	d.Rule.Spec = &networking.DestinationRule{Host: svc.Hostname, TrafficPolicy: policy}
	d.Reasons = reasons
	d.Warnings = append(d.Warnings, warnings...)
	if key != "" {
		memo[key] = generated{policy: policy, reasons: reasons}
	}
}

// trafficPolicy computes svc's traffic policy and the reasons for it.
func trafficPolicy(svc topology.Service, regions []string, meshOrders Orders, p Policy, od OutlierDetection, ready, any map[string]int, warnings *[]string) (*networking.TrafficPolicy, []string) {
	tp := &networking.TrafficPolicy{
		OutlierDetection: &networking.OutlierDetection{
			Consecutive_5XxErrors: wrapperspb.UInt32(od.Consecutive5xxErrors),
			Interval:              durationpb.New(od.Interval.Duration),
			BaseEjectionTime:      durationpb.New(od.BaseEjectionTime.Duration),
			MaxEjectionPercent:    od.MaxEjectionPercent,
		},
	}
	var reasons []string
	if svc.TrafficDistribution != "" {
		reasons = append(reasons, fmt.Sprintf("Service sets traffic distribution %s (%s): keeping it (no localityLbSetting), adding only the outlier detection failover needs", svc.TrafficDistribution, orUnknown(svc.TrafficDistributionFrom)))
		return tp, reasons
	}

	orders := meshOrders
	if v, ok := svc.Annotations[AnnotationFailover]; ok {
		own, err := ParseFailoverAnnotation(v)
		if err != nil {
			*warnings = append(*warnings, fmt.Sprintf("Service %s annotation %s: %v; using the mesh-wide order", svc.Key(), AnnotationFailover, err))
		} else {
			orders = ComputeOrders(regions, mergeFailover(p.Failover, own), p.Distances)
		}
	}

	lb := &networking.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(true)}
	froms := make([]string, 0, len(orders))
	for from := range orders {
		froms = append(froms, from)
	}
	sort.Strings(froms)
	for _, from := range froms {
		to, why := pickTarget(orders[from], ready, any)
		if to == "" {
			reasons = append(reasons, fmt.Sprintf("from %s: no failover entry (%s)", from, why))
			continue
		}
		lb.Failover = append(lb.Failover, &networking.LocalityLoadBalancerSetting_Failover{From: from, To: to})
		reasons = append(reasons, fmt.Sprintf("from %s: to %s (%s; order %s)", from, to, why, formatOrder(orders[from])))
	}
	tp.LoadBalancer = &networking.LoadBalancerSettings{LocalityLbSetting: lb}
	return tp, reasons
}

// pickTarget returns the first region of order with ready endpoints, else
// the first with any endpoints, and why.
func pickTarget(order []Ranked, ready, any map[string]int) (string, string) {
	for _, r := range order {
		if ready[r.Region] > 0 {
			return r.Region, "nearest " + source(r) + " with ready endpoints"
		}
	}
	for _, r := range order {
		if any[r.Region] > 0 {
			return r.Region, "nearest " + source(r) + " with endpoints, none ready"
		}
	}
	return "", "no other region has endpoints"
}

func source(r Ranked) string {
	switch r.Source {
	case "explicit":
		return "by explicit order"
	case "rtt":
		return "by RTT " + r.RTT
	}
	return "by default order"
}

func formatOrder(order []Ranked) string {
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = r.Region + "[" + r.Source + "]"
	}
	return strings.Join(parts, " ")
}

// mergeFailover returns mesh with the entries of own replacing those with
// the same source region.
func mergeFailover(mesh, own []Failover) []Failover {
	byFrom := map[string]bool{}
	for _, f := range own {
		byFrom[f.From] = true
	}
	out := append([]Failover(nil), own...)
	for _, f := range mesh {
		if !byFrom[f.From] {
			out = append(out, f)
		}
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "spec.trafficDistribution"
	}
	return s
}

func hasEndpoints(s topology.Service) bool {
	for _, e := range s.Endpoints {
		if e.Ready+e.NotReady > 0 {
			return true
		}
	}
	return false
}

// mergeWith places d's rule beside the user's rule r, which has subsets
// only: istiod resolves which DestinationRule applies to a host by
// namespace (the client's, then the service's, then the root namespace)
// and never merges across namespaces, so a rule in the rules namespace
// would be hidden by the user's; within one namespace it merges rules for
// the same host (subsets concatenated, the traffic policy of the oldest
// rule that has one), so the user's subsets and this locality policy both
// apply (ARCHITECTURE.md decision 46).
func mergeWith(d *Decision, r topology.UserDestinationRule) {
	d.Rule.Metadata.Namespace = r.Namespace
	d.Rule.Metadata.Annotations[AnnotationMergedWith] = r.Namespace + "/" + r.Name
	// Clip: Services with equal inputs share one reasons slice (memo).
	d.Reasons = append(slices.Clip(d.Reasons), fmt.Sprintf("user DestinationRule %s/%s/%s has subsets only: written beside it in namespace %s, where istiod merges the two (its subsets, this traffic policy)", r.Cluster, r.Namespace, r.Name, r.Namespace))
}

// userHosts matches hostnames against users' DestinationRule hosts.
type userHosts struct {
	exact    map[string]string
	suffixes [][2]string // suffix, rule
	rules    map[string]topology.UserDestinationRule
}

func newUserHosts(rules []topology.UserDestinationRule) *userHosts {
	u := &userHosts{exact: map[string]string{}, rules: map[string]topology.UserDestinationRule{}}
	for _, r := range rules {
		id := r.Cluster + "/" + r.Namespace + "/" + r.Name
		u.rules[id] = r
		h := r.Host
		switch {
		case h == "*":
			u.suffixes = append(u.suffixes, [2]string{"", id})
		case strings.HasPrefix(h, "*."):
			u.suffixes = append(u.suffixes, [2]string{h[1:], id})
		case !strings.Contains(h, "."):
			// Short name: relative to the rule's namespace.
			u.exact[h+"."+r.Namespace+".svc."] = id
		default:
			u.exact[h] = id
		}
	}
	return u
}

// rule returns the rule that covers host ("" if none) and whether it
// names host exactly (not a wildcard).
func (u *userHosts) rule(host string) (topology.UserDestinationRule, string, bool) {
	id := u.covers(host)
	if id == "" {
		return topology.UserDestinationRule{}, "", false
	}
	r := u.rules[id]
	return r, id, r.Host != "*" && !strings.HasPrefix(r.Host, "*.")
}

// covers returns the rule that covers host, or "".
func (u *userHosts) covers(host string) string {
	if id, ok := u.exact[host]; ok {
		return id
	}
	// Short names were stored as name.namespace.svc. (any domain).
	if i := strings.Index(host, ".svc."); i >= 0 {
		if id, ok := u.exact[host[:i+5]]; ok {
			return id
		}
	}
	for _, s := range u.suffixes {
		if strings.HasSuffix(host, s[0]) {
			return s[1]
		}
	}
	return ""
}
