package rulesync

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

func names(rules []*locality.Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Metadata.Name+" "+r.Spec.GetHost())
	}
	return out
}

func TestGroup(t *testing.T) {
	top := benchTopology(5, "r1") // svc-0000 … svc-0004 in namespace bench
	// svc-0001 has no ready endpoint in r2: r1 fails over to r3, its own rule.
	top.Services[1].Endpoints[2].Ready, top.Services[1].Endpoints[2].NotReady = 0, 1
	// svc-0003 has no endpoints: covered by the wildcard, no rule of its own.
	top.Services[3].Endpoints = nil
	res, err := locality.Translate(top, locality.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	wantGrouped := []string{
		"meshfleet-locality.bench *.bench.svc.cluster.local",
		"meshfleet-locality.svc-0001.bench svc-0001.bench.svc.cluster.local",
	}
	perService := []string{
		"meshfleet-locality.svc-0000.bench svc-0000.bench.svc.cluster.local",
		"meshfleet-locality.svc-0001.bench svc-0001.bench.svc.cluster.local",
		"meshfleet-locality.svc-0002.bench svc-0002.bench.svc.cluster.local",
		"meshfleet-locality.svc-0004.bench svc-0004.bench.svc.cluster.local",
	}
	// svc-0004 left alone: svc-0000 and svc-0002 share the namespace rule,
	// and svc-0004's empty rule keeps it from the wildcard.
	shielded := []string{
		"meshfleet-locality.bench *.bench.svc.cluster.local",
		"meshfleet-locality.svc-0001.bench svc-0001.bench.svc.cluster.local",
		"meshfleet-locality.svc-0004.bench svc-0004.bench.svc.cluster.local",
	}
	for _, tc := range []struct {
		name string
		min  int
		edit func(*topology.Topology)
		want []string
	}{
		{"three share a rule", 3, nil, wantGrouped},
		{"fewer than min share it", 4, nil, perService},
		{"grouping off", -1, nil, perService},
		{"a Service left alone gets a shield", 2, func(t *topology.Topology) {
			t.Services[4].Annotations = map[string]string{locality.AnnotationLocality: "off"}
		}, shielded},
		{"a user's rule for one host gets a shield", 2, func(t *topology.Topology) {
			t.UserDestinationRules = []topology.UserDestinationRule{{Cluster: "c1", Namespace: "bench", Name: "mine", Host: "svc-0004"}}
		}, shielded},
		{"left alone where too few share: no rule", 3, func(t *topology.Topology) {
			t.Services[4].Annotations = map[string]string{locality.AnnotationLocality: "off"}
		}, perService[:3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := res
			if tc.edit != nil {
				top := benchTopology(5, "r1")
				top.Services[1].Endpoints[2].Ready, top.Services[1].Endpoints[2].NotReady = 0, 1
				top.Services[3].Endpoints = nil
				tc.edit(top)
				var err error
				if r, err = locality.Translate(top, locality.Policy{}); err != nil {
					t.Fatal(err)
				}
			}
			out, rules, err := Group(r, tc.min)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(rules); !slices.Equal(got, tc.want) {
				t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if len(out.Decisions) != len(r.Decisions) {
				t.Fatalf("%d decisions, want %d", len(out.Decisions), len(r.Decisions))
			}
			if slices.Equal(tc.want, shielded) {
				d := out.Decisions[4]
				if d.Rule.Spec.GetTrafficPolicy() != nil || d.Rule.Spec.GetHost() != d.Host || d.Skipped == "" ||
					!strings.Contains(strings.Join(d.Reasons, "\n"), "keeps the namespace rule meshfleet-locality.bench") {
					t.Errorf("svc-0004's shield: spec %v, skipped %q, reasons %q", d.Rule.Spec, d.Skipped, d.Reasons)
				}
			}
			if tc.min == 3 && tc.edit == nil {
				// The debug view names the rule that applies.
				if d := out.Decisions[0]; d.Rule.Metadata.Name != GroupName("bench") || !strings.Contains(strings.Join(d.Reasons, "\n"), "shares the namespace rule") {
					t.Errorf("svc-0000's decision: rule %s, reasons %q", d.Rule.Metadata.Name, d.Reasons)
				}
				if r.Decisions[0].Rule.Metadata.Name == GroupName("bench") {
					t.Error("Group changed its input")
				}
			}
		})
	}
}

// While a member is missing, a host its namespace's live rule covers is
// held, not given a rule of its own (which would change its policy).
func TestDecideHoldsHostsOfLiveGroup(t *testing.T) {
	group := rule(GroupName("bench"), "*.bench.svc.cluster.local")
	own := rule(locality.RuleName("bench", "svc-0001"), "svc-0001.bench.svc.cluster.local")
	other := rule(locality.RuleName("shop", "cart"), "cart.shop.svc.cluster.local")
	live := liveOf(t, group)
	p, err := Decide(live, []*locality.Rule{group, own, other}, map[string]bool{"c1": true, "c2": false})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(p), "create [meshfleet-locality.cart.shop] update [] delete [] held [meshfleet-locality.svc-0001.bench] unchanged 1"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	p, err = Decide(live, []*locality.Rule{group, own, other}, map[string]bool{"c1": true, "c2": true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(p), "create [meshfleet-locality.svc-0001.bench,meshfleet-locality.cart.shop] update [] delete [] held [] unchanged 1"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
