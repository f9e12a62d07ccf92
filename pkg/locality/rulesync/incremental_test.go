package rulesync

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// groupWorld is a topology whose namespaces hover around GroupMin
// Services with one shared policy, so that random changes move Services
// into and out of the namespace rule, and namespaces into and out of being
// grouped (a tie, too few sharing; Services left alone get shields).
func groupService(r *rand.Rand, ns, name string) topology.Service {
	s := topology.Service{Namespace: ns, Name: name, Hostname: name + "." + ns + ".svc.cluster.local"}
	eps := []topology.EndpointGroup{{Cluster: "c0", Locality: topology.Locality{Region: "r0", Zone: "z"}, Label: "r0/z/", Ready: 1}}
	switch r.IntN(12) {
	case 0: // another policy: no r1 endpoints
	case 1: // another policy: r1 not ready
		eps = append(eps, topology.EndpointGroup{Cluster: "c1", Locality: topology.Locality{Region: "r1", Zone: "z"}, Label: "r1/z/", NotReady: 1})
	case 2:
		if r.IntN(4) == 0 {
			s.Annotations = map[string]string{locality.AnnotationLocality: "off"} // left alone: a shield where grouped
		}
		eps = append(eps, topology.EndpointGroup{Cluster: "c1", Locality: topology.Locality{Region: "r1", Zone: "z"}, Label: "r1/z/", Ready: 1})
	case 3:
		eps = nil // no endpoints: may be under the namespace rule
	default: // the common policy
		eps = append(eps, topology.EndpointGroup{Cluster: "c1", Locality: topology.Locality{Region: "r1", Zone: "z"}, Label: "r1/z/", Ready: 1})
	}
	s.Endpoints = eps
	return s
}

// TestPlacedIncrementalEqualsGroup changes random Services and checks
// after each change that the placed and grouped rules kept up to date per
// Service (placed.update, what the server writes from) equal
// Group(Place(Translate(...))) computed from scratch, decisions and rules.
func TestPlacedIncrementalEqualsGroup(t *testing.T) {
	namespaces := []string{"a", "a-b", "b"}
	const min = 6
	for seed := range uint64(25) {
		r := rand.New(rand.NewPCG(seed, 3))
		topo := &topology.Topology{ConfigCluster: "c0", Clusters: []topology.Cluster{
			{Name: "c0", Nodes: []topology.Node{{Name: "n0", Locality: topology.Locality{Region: "r0", Zone: "z"}}}},
			{Name: "c1", Nodes: []topology.Node{{Name: "n1", Locality: topology.Locality{Region: "r1", Zone: "z"}}}},
		}}
		for i := range 24 {
			topo.Services = append(topo.Services, groupService(r, namespaces[i%3], fmt.Sprintf("s%02d", i)))
		}
		topo.Sort()
		res, err := locality.Translate(topo, locality.Policy{})
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := (&placed{rulesNamespace: "istio-system", groupMin: min}).update(res, topology.Delta{All: true})
		if err != nil {
			t.Fatal(err)
		}
		for step := range 200 {
			next := &topology.Topology{Clusters: topo.Clusters, ConfigCluster: topo.ConfigCluster, Services: slices.Clone(topo.Services)}
			var d topology.Delta
			for range 1 + r.IntN(2) {
				ns, name := namespaces[r.IntN(3)], fmt.Sprintf("s%02d", r.IntN(30))
				i := slices.IndexFunc(next.Services, func(s topology.Service) bool { return s.Namespace == ns && s.Name == name })
				switch {
				case i >= 0 && r.IntN(4) == 0:
					next.Services = slices.Delete(next.Services, i, i+1)
				case i >= 0:
					next.Services[i] = groupService(r, ns, name)
				default:
					next.Services = append(next.Services, groupService(r, ns, name))
				}
				d.Services = append(d.Services, ns+"/"+name)
			}
			next.Sort()
			res, d, err = locality.TranslateDelta(res, next, locality.Policy{}, d)
			if err != nil {
				t.Fatal(err)
			}
			prev := p
			var affected map[string]bool
			if p, affected, err = p.update(res, d); err != nil {
				t.Fatal(err)
			}
			want, wantRules, err := Group(Place(res, "istio-system"), min)
			if err != nil {
				t.Fatal(err)
			}
			got, gotRules := p.result()
			if msg := diffDecisions(want.Decisions, got.Decisions); msg != "" {
				t.Fatalf("seed %d step %d (changed %v): placed.update against Group: %s", seed, step, d.Services, msg)
			}
			if msg := diffRules(wantRules, gotRules); msg != "" {
				t.Fatalf("seed %d step %d (changed %v): rules of placed.update against Group's: %s", seed, step, d.Services, msg)
			}
			// Every rule that differs from before is among those named.
			if affected != nil {
				_, before := prev.result()
				for _, name := range changedRules(before, gotRules) {
					if !affected[name] {
						t.Fatalf("seed %d step %d (changed %v): rule %s changed but is not among the rules to compare %v", seed, step, d.Services, name, affected)
					}
				}
			}
			topo = next
		}
	}
}

func diffDecisions(want, got []locality.Decision) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d decisions, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if (w.Rule == nil) != (g.Rule == nil) || (w.Rule != nil && !sameRule(w.Rule, g.Rule)) {
			return fmt.Sprintf("decision %s: rule %v, want %v", w.Service, g.Rule, w.Rule)
		}
		w.Rule, g.Rule = nil, nil
		if !reflect.DeepEqual(w, g) {
			return fmt.Sprintf("decision %s:\n got %+v\nwant %+v", w.Service, g, w)
		}
	}
	return ""
}

func sameRule(a, b *locality.Rule) bool {
	return proto.Equal(a.Spec, b.Spec) && reflect.DeepEqual(a.Metadata, b.Metadata) && a.APIVersion == b.APIVersion && a.Kind == b.Kind
}

func diffRules(want, got []*locality.Rule) string {
	names := func(rs []*locality.Rule) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Metadata.Name)
		}
		return strings.Join(out, ",")
	}
	if names(want) != names(got) {
		return fmt.Sprintf("rules %s, want %s", names(got), names(want))
	}
	for i := range want {
		if !sameRule(want[i], got[i]) {
			return fmt.Sprintf("rule %s differs: %v, want %v", want[i].Metadata.Name, got[i], want[i])
		}
	}
	return ""
}

// changedRules names the rules added, removed or changed between two sets.
func changedRules(before, after []*locality.Rule) []string {
	b := map[string]*locality.Rule{}
	for _, r := range before {
		b[r.Metadata.Name] = r
	}
	var out []string
	for _, r := range after {
		if o, ok := b[r.Metadata.Name]; !ok || !sameRule(o, r) {
			out = append(out, r.Metadata.Name)
		}
		delete(b, r.Metadata.Name)
	}
	for name := range b {
		out = append(out, name)
	}
	return out
}
