package rulesync

import (
	"fmt"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshfleet/meshfleet/pkg/locality"
)

func rule(name, host string) *locality.Rule {
	return &locality.Rule{APIVersion: "networking.istio.io/v1", Kind: "DestinationRule",
		Metadata: locality.RuleMeta{Name: name, Namespace: "istio-system", Labels: map[string]string{locality.LabelManagedBy: locality.ManagedBy}},
		Spec:     &networking.DestinationRule{Host: host}}
}

func liveOf(t *testing.T, rules ...*locality.Rule) map[string]Live {
	out := map[string]Live{}
	for _, r := range rules {
		h, err := Hash(r)
		if err != nil {
			t.Fatal(err)
		}
		out[r.Metadata.Name] = Live{Namespace: r.Metadata.Namespace, Name: r.Metadata.Name, UID: "uid-" + r.Metadata.Name, Hash: h}
	}
	return out
}

// summary prints a plan as "create a,b update c delete d held e (reason)".
func summary(p Plan) string {
	names := func(ws []Write) string {
		var s []string
		for _, w := range ws {
			s = append(s, w.Rule.Metadata.Name)
		}
		return strings.Join(s, ",")
	}
	var d []string
	for _, x := range p.Delete {
		d = append(d, x.Name+"@"+x.UID)
	}
	return fmt.Sprintf("create [%s] update [%s] delete [%s] held [%s] unchanged %d", names(p.Create), names(p.Update), strings.Join(d, ","), strings.Join(p.Held, ","), p.Unchanged)
}

func TestDecide(t *testing.T) {
	a, b, c := rule("a", "a.ns.svc.cluster.local"), rule("b", "b.ns.svc.cluster.local"), rule("c", "c.ns.svc.cluster.local")
	b2 := rule("b", "b.ns.svc.cluster.local")
	b2.Spec.TrafficPolicy = &networking.TrafficPolicy{}
	// b moves beside a user's rule with subsets only (decision 46).
	bMerged := rule("b", "b.ns.svc.cluster.local")
	bMerged.Metadata.Namespace = "ns"
	synced := map[string]bool{"primary": true, "remote1": true}
	oneDown := map[string]bool{"primary": true, "remote1": false}
	tests := []struct {
		name       string
		live       map[string]Live
		desired    []*locality.Rule
		members    map[string]bool
		want       string
		wantReason string
	}{
		{"first write creates all", nil, []*locality.Rule{a, b}, synced, "create [a,b] update [] delete [] held [] unchanged 0", ""},
		{"steady state: zero writes", liveOf(t, a, b), []*locality.Rule{a, b}, synced, "create [] update [] delete [] held [] unchanged 2", ""},
		{"all synced: update, create, prune own", liveOf(t, a, b), []*locality.Rule{b2, c}, synced, "create [c] update [b] delete [a@uid-a] held [] unchanged 0", ""},
		{"a member not synced since start: keep every live rule, create only new hosts", liveOf(t, a, b), []*locality.Rule{b2, c}, oneDown,
			"create [c] update [] delete [] held [a,b] unchanged 0", "remote1"},
		{"a member not synced and its translation is empty: nothing withdrawn", liveOf(t, a, b), nil, oneDown,
			"create [] update [] delete [] held [a,b] unchanged 0", "remote1"},
		{"no member known yet: nothing withdrawn", liveOf(t, a), nil, map[string]bool{},
			"create [] update [] delete [] held [a] unchanged 0", "no member"},
		{"a rule that moves namespace: the old one is deleted first", liveOf(t, a, b), []*locality.Rule{a, bMerged}, synced,
			"create [] update [] delete [b@uid-b] held [] unchanged 1", ""},
		{"a rule that moves namespace while a member is not synced: held", liveOf(t, a, b), []*locality.Rule{a, bMerged}, oneDown,
			"create [] update [] delete [] held [b] unchanged 1", "remote1"},
		{"a moved rule in place: steady", liveOf(t, a, bMerged), []*locality.Rule{a, bMerged}, synced,
			"create [] update [] delete [] held [] unchanged 2", ""},
		{"a removed label or hash is rewritten", map[string]Live{"a": {Name: "a", UID: "u"}}, []*locality.Rule{a}, synced, "create [] update [a] delete [] held [] unchanged 0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Decide(tt.live, tt.desired, tt.members)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(p); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !strings.Contains(p.Reason, tt.wantReason) || (tt.wantReason == "") != (p.Reason == "") {
				t.Errorf("reason %q, want it to mention %q", p.Reason, tt.wantReason)
			}
		})
	}
	if _, err := Decide(nil, []*locality.Rule{a, rule("a", "x")}, synced); err == nil {
		t.Error("two desired rules with one name: want an error")
	}
}

func TestHash(t *testing.T) {
	a := rule("a", "a.ns.svc.cluster.local")
	h1, _ := Hash(a)
	h2, _ := Hash(rule("a", "a.ns.svc.cluster.local"))
	if h1 != h2 {
		t.Errorf("equal rules hash differently: %s %s", h1, h2)
	}
	other := rule("a", "a.ns.svc.cluster.local")
	other.Metadata.Labels["team"] = "x"
	other.Metadata.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"}
	if h, _ := Hash(other); h != h1 {
		t.Error("labels and annotations others add change the hash: they would be fought over")
	}
	for name, mod := range map[string]func(r *locality.Rule){
		"spec":  func(r *locality.Rule) { r.Spec.Host = "other" },
		"label": func(r *locality.Rule) { r.Metadata.Labels[locality.LabelManagedBy] = "someone" },
		"annotation": func(r *locality.Rule) {
			r.Metadata.Annotations = map[string]string{locality.AnnotationGenerated: "Service x/y"}
		},
		"namespace": func(r *locality.Rule) { r.Metadata.Namespace = "other" },
	} {
		r := rule("a", "a.ns.svc.cluster.local")
		mod(r)
		if h, _ := Hash(r); h == h1 {
			t.Errorf("a changed %s keeps the hash", name)
		}
	}
}
