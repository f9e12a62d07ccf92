package rulesync

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// foRule is a rule with the failover entries "from>to".
func foRule(entries ...string) *locality.Rule {
	r := rule("meshfleet-locality.fo.default", "fo.default.svc.cluster.local")
	r.Metadata.Annotations = map[string]string{locality.AnnotationGenerated: "Service default/fo"}
	lb := &networking.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(true)}
	for _, e := range entries {
		from, to, _ := strings.Cut(e, ">")
		lb.Failover = append(lb.Failover, &networking.LocalityLoadBalancerSetting_Failover{From: from, To: to})
	}
	r.Spec.TrafficPolicy = &networking.TrafficPolicy{LoadBalancer: &networking.LoadBalancerSettings{LocalityLbSetting: lb}}
	return r
}

func ready(regions ...string) Ready {
	out := Ready{}
	for _, r := range regions {
		out[r] = true
	}
	return out
}

func TestDeferrable(t *testing.T) {
	base := foRule("r1>r2", "r2>r1", "r3>r1", "r4>r1")
	otherOD := foRule("r1>r2", "r2>r1", "r3>r1", "r4>r1")
	otherOD.Spec.TrafficPolicy.OutlierDetection = &networking.OutlierDetection{MaxEjectionPercent: 100}
	otherNote := foRule("r1>r2", "r2>r3", "r3>r1", "r4>r1")
	otherNote.Metadata.Annotations[locality.AnnotationGenerated] = "Services of namespace default without a rule of their own"
	for _, tc := range []struct {
		name     string
		old, new *locality.Rule
		ready    []Ready
		want     bool
	}{
		// r1 keeps endpoints, r2's target moves: r2 is served in r2.
		{"dormant: from-region ready", base, foRule("r1>r2", "r2>r3", "r3>r1", "r4>r1"), []Ready{ready("r1", "r2", "r3")}, true},
		{"dormant: entry added for a ready region", foRule("r1>r2"), foRule("r1>r2", "r2>r1"), []Ready{ready("r1", "r2")}, true},
		// The bench's region failover: r1 loses its last ready endpoint,
		// regions without endpoints now fail over to r2, the only ready one.
		{"one ready region left", base, foRule("r1>r2", "r2>r3", "r3>r2", "r4>r2"), []Ready{ready("r2")}, true},
		{"neither target ready", foRule("r3>r1"), foRule("r3>r4"), []Ready{ready("r2", "r5")}, true},
		// r3 has no endpoints and two other regions are ready: its clients
		// would prefer r2 over r4 now, instead of both together.
		{"order among ready regions changes", base, foRule("r1>r2", "r2>r1", "r3>r2", "r4>r2"), []Ready{ready("r2", "r4")}, false},
		{"user's order: ready target moves", foRule("r3>r2"), foRule("r3>r4"), []Ready{ready("r2", "r4")}, false},
		{"entry dropped for a region without endpoints", foRule("r3>r2", "r1>r2"), foRule("r1>r2"), []Ready{ready("r1", "r2", "r4")}, false},
		{"from-region not ready", base, foRule("r1>r3", "r2>r1", "r3>r1", "r4>r1"), []Ready{ready("r2", "r3")}, false},
		// A namespace rule: every Service under it must allow it.
		{"shared rule, one Service not ready in r2", base, foRule("r1>r2", "r2>r3", "r3>r1", "r4>r1"), []Ready{ready("r1", "r2", "r3"), ready("r1", "r3", "r4")}, false},
		{"shared rule, all ready in r2", base, foRule("r1>r2", "r2>r3", "r3>r1", "r4>r1"), []Ready{ready("r1", "r2", "r3"), ready("r1", "r2")}, true},
		{"other field changed", base, otherOD, []Ready{ready("r1", "r2", "r3", "r4")}, false},
		{"metadata changed", base, otherNote, []Ready{ready("r1", "r2", "r3", "r4")}, false},
		{"no old rule", nil, base, []Ready{ready("r1")}, false},
		{"no Service under the rule", base, foRule("r1>r2", "r2>r3", "r3>r1", "r4>r1"), nil, false},
		{"equal", base, foRule("r1>r2", "r2>r1", "r3>r1", "r4>r1"), []Ready{ready("r1")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Deferrable(tc.old, tc.new, tc.ready)
			if got != tc.want {
				t.Errorf("Deferrable = %v (%s), want %v", got, why, tc.want)
			}
			if !got && why == "" {
				t.Error("no reason given for an urgent update")
			}
		})
	}
}

// foTopology is the bench's failover Service (tests/bench/locality): two
// endpoints in r1, one in r2, nodes in r1 to r4; notReady names the
// endpoints (0, 1: r1's; 2: r2's) that are not ready.
func foTopology(notReady ...int) *topology.Topology {
	t := &topology.Topology{Clusters: []topology.Cluster{
		{Name: "c1", Nodes: []topology.Node{
			{Name: "a", Locality: topology.Locality{Region: "r1", Zone: "z1"}}, {Name: "b", Locality: topology.Locality{Region: "r1", Zone: "z2"}},
			{Name: "c", Locality: topology.Locality{Region: "r2", Zone: "z5"}}}},
		{Name: "c2", Nodes: []topology.Node{{Name: "d", Locality: topology.Locality{Region: "r3", Zone: "z3"}}}},
		{Name: "c3", Nodes: []topology.Node{{Name: "e", Locality: topology.Locality{Region: "r4", Zone: "z4"}}}},
	}}
	svc := topology.Service{Namespace: "default", Name: "fo", Hostname: "fo.default.svc.cluster.local"}
	for i, l := range []topology.Locality{{Region: "r1", Zone: "z1"}, {Region: "r1", Zone: "z2"}, {Region: "r2", Zone: "z5"}} {
		g := topology.EndpointGroup{Cluster: "c1", Locality: l, Ready: 1}
		if slices.Contains(notReady, i) {
			g.Ready, g.NotReady = 0, 1
		}
		svc.Endpoints = append(svc.Endpoints, g)
	}
	t.Services = []topology.Service{svc}
	return t
}

// TestDeferrableTranslated runs Deferrable on translated rules, the old
// one read back from the object it is written as.
func TestDeferrableTranslated(t *testing.T) {
	translate := func(top *topology.Topology) *locality.Rule {
		t.Helper()
		res, err := locality.Translate(top, locality.Policy{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Rules()[0]
	}
	written := func(r *locality.Rule) *locality.Rule {
		t.Helper()
		obj, err := toObject(r, "h", "")
		if err != nil {
			t.Fatal(err)
		}
		back, err := ruleOf(obj)
		if err != nil {
			t.Fatal(err)
		}
		return back
	}
	healthy := foTopology()
	if ok, why := Deferrable(written(translate(healthy)), translate(healthy), []Ready{ReadyOf(healthy.Services[0])}); !ok {
		t.Fatalf("a rule read back from its object differs from itself: %s", why)
	}
	for _, tc := range []struct {
		name     string
		notReady []int
		want     bool
	}{
		{"zone failover", []int{0}, true}, // no rule change at all
		{"region failover", []int{0, 1}, true},
		{"r2 not ready", []int{2}, true}, // r1 served in r1; r3, r4 had r1 already
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := foTopology(tc.notReady...)
			got, why := Deferrable(written(translate(healthy)), translate(top), []Ready{ReadyOf(top.Services[0])})
			if got != tc.want {
				t.Errorf("Deferrable = %v (%s), want %v", got, why, tc.want)
			}
		})
	}
	// The Service's own order moves r3 (no endpoints) from r1 to r2, both
	// ready: urgent.
	own := foTopology()
	own.Services[0].Annotations = map[string]string{locality.AnnotationFailover: "r3=r2"}
	if ok, _ := Deferrable(written(translate(healthy)), translate(own), []Ready{ReadyOf(own.Services[0])}); ok {
		t.Error("a failover annotation's change of a region without endpoints was deferred")
	}
	// Moving r1's target (r1 is served in r1) is dormant for Deferrable;
	// the server writes it at once as the user's change (settingsChanged).
	own.Services[0].Annotations = map[string]string{locality.AnnotationFailover: "r1=r3"}
	if ok, why := Deferrable(written(translate(healthy)), translate(own), []Ready{ReadyOf(own.Services[0])}); !ok {
		t.Errorf("a dormant entry's change is urgent: %s", why)
	}
}

func TestSettingsChanged(t *testing.T) {
	known := map[string]string{}
	top := foTopology()
	key := top.Services[0].Key()
	if changed := settingsChanged(known, top, topology.Delta{All: true}); !changed[key] || len(known) != 1 {
		t.Fatalf("first: changed %v, known %v", changed, known)
	}
	if changed := settingsChanged(known, foTopology(1), topology.Delta{All: true}); len(changed) != 0 {
		t.Errorf("All, endpoints only: changed %v", changed)
	}
	check := func(what string, top *topology.Topology, want bool) {
		t.Helper()
		changed := settingsChanged(known, top, topology.Delta{Services: []string{key, "default/gone"}})
		if changed[key] != want {
			t.Errorf("%s: changed %v, want %v", what, changed, want)
		}
	}
	check("endpoints only", foTopology(0, 1), false)
	annotated := foTopology()
	annotated.Services[0].Annotations = map[string]string{locality.AnnotationFailover: "r1=r3"}
	check("annotation", annotated, true)
	check("annotation kept, endpoints changed", func() *topology.Topology {
		x := foTopology(2)
		x.Services[0].Annotations = map[string]string{locality.AnnotationFailover: "r1=r3"}
		return x
	}(), false)
	check("traffic distribution", func() *topology.Topology {
		x := foTopology(2)
		x.Services[0].Annotations = map[string]string{locality.AnnotationFailover: "r1=r3"}
		x.Services[0].TrafficDistribution = "PreferClose"
		return x
	}(), true)
	check("gone", &topology.Topology{}, false)
	check("new", foTopology(), true)
	if changed := settingsChanged(known, &topology.Topology{}, topology.Delta{All: true}); len(changed) != 0 || len(known) != 0 {
		t.Errorf("All, every Service gone: changed %v, known %v", changed, known)
	}
}

// TestReadyIndex checks which Services' readiness a rule is judged by: a
// namespace rule's every Service, a per-Service rule's own.
func TestReadyIndex(t *testing.T) {
	top := benchTopology(60, "r1")
	// svc-0001 has no ready endpoint in r2: its own rule (r1 → r3).
	top.Services[1].Endpoints[2].Ready, top.Services[1].Endpoints[2].NotReady = 0, 1
	// svc-0002 has no endpoint in r3: the same rule as the others (r3's
	// target is r1 either way), so it shares the namespace rule.
	top.Services[2].Endpoints = top.Services[2].Endpoints[:3]
	res, err := locality.Translate(top, locality.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	pl, _, err := (&placed{rulesNamespace: "istio-system", groupMin: DefaultGroupMin}).update(res, topology.Delta{All: true})
	if err != nil {
		t.Fatal(err)
	}
	idx := readyIndex{t: top}
	show := func(rs []Ready) []string {
		var out []string
		for _, r := range rs {
			var regions []string
			for k := range r {
				regions = append(regions, k)
			}
			slices.Sort(regions)
			out = append(out, strings.Join(regions, ","))
		}
		slices.Sort(out)
		return out
	}
	ready, keys := idx.of(pl, GroupName("bench"))
	if got, want := show(ready), []string{"r1,r2", "r1,r2,r3"}; !slices.Equal(got, want) || len(keys) != 59 {
		t.Errorf("namespace rule: readiness %q of %d Services, want %q of 59", got, len(keys), want)
	}
	ready, keys = idx.of(pl, locality.RuleName("bench", "svc-0001"))
	if got, want := show(ready), []string{"r1,r3"}; !slices.Equal(got, want) || !slices.Equal(keys, []string{"bench/svc-0001"}) {
		t.Errorf("svc-0001's rule: readiness %q of %q, want %q", got, keys, want)
	}
	if got, _ := idx.of(pl, locality.RuleName("bench", "svc-0000")); got != nil {
		t.Errorf("svc-0000 has no rule of its own, got readiness %v", show(got))
	}
}

func TestDeferrableMove(t *testing.T) {
	group := foRule("r1>r2", "r2>r1", "r3>r1")
	group.Metadata.Name, group.Spec.Host = GroupName("default"), "*.default.svc.cluster.local"
	own := foRule("r1>r2", "r2>r1", "r3>r2") // r1 lost its last ready endpoint
	if ok, why := DeferrableMove(group, own, ready("r2")); !ok {
		t.Errorf("leaving the namespace rule, r2 the only ready region: urgent (%s)", why)
	}
	// r1 ready again: r3's clients would go to r1 first, not r1 and r2
	// together: the move back is urgent.
	if ok, _ := DeferrableMove(own, group, ready("r1", "r2")); ok {
		t.Error("rejoining the namespace rule, r3 moving from r2 to r1, both ready: deferred")
	}
	// r2's own target differs only: r2 is served in r2.
	if ok, why := DeferrableMove(foRule("r1>r2", "r2>r3", "r3>r1"), group, ready("r1", "r2", "r3")); !ok {
		t.Errorf("rejoining the namespace rule, only r2's target differs: urgent (%s)", why)
	}
	if ok, _ := DeferrableMove(group, own, ready("r1", "r2")); ok {
		t.Error("r3 (no endpoints) moved from r1 to r2, both ready: deferred")
	}
	merged := foRule("r1>r2", "r2>r1", "r3>r2")
	merged.Metadata.Annotations[locality.AnnotationMergedWith] = "default/user"
	if ok, _ := DeferrableMove(group, merged, ready("r2")); ok {
		t.Error("a rule merged into a user's: deferred")
	}
	if ok, _ := DeferrableMove(nil, own, ready("r2")); ok {
		t.Error("no live namespace rule: deferred")
	}
}
