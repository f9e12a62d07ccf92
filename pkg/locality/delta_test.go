package locality

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/meshfleet/meshfleet/pkg/topology"
)

// randomService is a Service with random endpoints and settings: the
// inputs a decision depends on.
func randomService(r *rand.Rand, ns, name string) topology.Service {
	s := topology.Service{Namespace: ns, Name: name, Hostname: name + "." + ns + ".svc.cluster.local"}
	switch r.IntN(8) {
	case 0:
		s.Annotations = map[string]string{AnnotationLocality: "off"}
	case 1:
		s.Annotations = map[string]string{AnnotationFailover: fmt.Sprintf("r%d=r%d", r.IntN(2), 2+r.IntN(3))}
	case 2:
		s.TrafficDistribution, s.TrafficDistributionFrom = "PreferClose", "spec.trafficDistribution of c0's copy"
	case 3:
		s.IgnoredTrafficDistribution = []string{"c1's copy sets PreferClose; istiod uses c0's copy"}
	}
	for range r.IntN(4) {
		// Regions r0..r5: r3, r4 and r5 only ever come from endpoints, r4
		// and r5 from few, so a change of one Service often adds or
		// removes a region.
		reg := fmt.Sprintf("r%d", r.IntN(4))
		if r.IntN(25) == 0 {
			reg = fmt.Sprintf("r%d", 4+r.IntN(2))
		}
		e := topology.EndpointGroup{Cluster: fmt.Sprintf("c%d", r.IntN(2)), Locality: topology.Locality{Region: reg, Zone: "z"}, Label: reg + "/z/", Ready: r.IntN(2), NotReady: r.IntN(2)}
		if r.IntN(6) == 0 {
			e.Label = reg + "/z" // a pod label: a duplicate locality
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	slices.SortFunc(s.Endpoints, func(a, b topology.EndpointGroup) int {
		return cmpOr(a.Cluster, b.Cluster, a.Locality.String(), b.Locality.String(), a.Label, b.Label)
	})
	return s
}

func cmpOr(pairs ...string) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := compareStrings(pairs[i], pairs[i+1]); c != 0 {
			return c
		}
	}
	return 0
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestTranslateDeltaEqualsTranslate changes random Services of a random
// topology (added, changed, removed; sometimes the policy or a user's rule
// too) and checks after each change that TranslateDelta, fed the previous
// result and the Services changed, gives what Translate gives from
// scratch, inputs fingerprint included.
func TestTranslateDeltaEqualsTranslate(t *testing.T) {
	namespaces := []string{"a", "a-b", "b"}
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 2))
		topo := &topology.Topology{ConfigCluster: "c0", Clusters: []topology.Cluster{
			{Name: "c0", Nodes: []topology.Node{{Name: "n0", Locality: topology.Locality{Region: "r0", Zone: "z"}}, {Name: "n1", Locality: topology.Locality{Region: "r1", Zone: "z"}}}},
			{Name: "c1", Nodes: []topology.Node{{Name: "n2", Locality: topology.Locality{Region: "r2", Zone: "z"}}}},
		}}
		for i := range 30 {
			topo.Services = append(topo.Services, randomService(r, namespaces[i%3], fmt.Sprintf("s%02d", i)))
		}
		topo.Sort()
		policy := Policy{Failover: []Failover{{From: "r0", To: "r2"}}}
		res, err := Translate(topo, policy)
		if err != nil {
			t.Fatal(err)
		}
		for step := range 100 {
			next := &topology.Topology{Clusters: topo.Clusters, UserDestinationRules: topo.UserDestinationRules, ConfigCluster: topo.ConfigCluster, Services: slices.Clone(topo.Services)}
			var d topology.Delta
			for range 1 + r.IntN(3) {
				ns, name := namespaces[r.IntN(3)], fmt.Sprintf("s%02d", r.IntN(40))
				i := slices.IndexFunc(next.Services, func(s topology.Service) bool { return s.Namespace == ns && s.Name == name })
				switch {
				case i >= 0 && r.IntN(4) == 0:
					next.Services = slices.Delete(next.Services, i, i+1)
				case i >= 0:
					next.Services[i] = randomService(r, ns, name)
				default:
					next.Services = append(next.Services, randomService(r, ns, name))
				}
				d.Services = append(d.Services, ns+"/"+name)
			}
			switch r.IntN(20) {
			case 0: // the policy changes: everything is translated again
				policy.Failover[0].To = []string{"r1", "r2"}[r.IntN(2)]
			case 1: // a user's rule comes or goes
				if len(next.UserDestinationRules) == 0 {
					next.UserDestinationRules = []topology.UserDestinationRule{{Cluster: "c0", Namespace: "a", Name: "mine", Host: "*.a.svc.cluster.local"}}
				} else {
					next.UserDestinationRules = nil
				}
			}
			next.Sort()
			got, _, err := TranslateDelta(res, next, policy, d)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Translate(next, policy)
			if err != nil {
				t.Fatal(err)
			}
			if !equalDecisions(want.Decisions, got.Decisions) {
				diff := cmp.Diff(jsonOf(t, want, " "), jsonOf(t, got, " "))
				t.Fatalf("seed %d step %d (changed %v): TranslateDelta (+) against Translate (-):\n%s", seed, step, d.Services, diff)
			}
			if got.Inputs() != want.Inputs() || got.Inputs() != inputsOf(next, policy) {
				t.Fatalf("seed %d step %d: TranslateDelta's Inputs %s, Translate's %s, want %s", seed, step, got.Inputs(), want.Inputs(), inputsOf(next, policy))
			}
			topo, res = next, got
		}
	}
}

// equalDecisions reports whether two decision lists are equal (rules'
// specs compared as protos: faster than through JSON).
func equalDecisions(a, b []Decision) bool {
	return slices.EqualFunc(a, b, func(x, y Decision) bool {
		if (x.Rule == nil) != (y.Rule == nil) {
			return false
		}
		if x.Rule != nil && (!proto.Equal(x.Rule.Spec, y.Rule.Spec) || !reflect.DeepEqual(x.Rule.Metadata, y.Rule.Metadata) ||
			x.Rule.APIVersion != y.Rule.APIVersion || x.Rule.Kind != y.Rule.Kind) {
			return false
		}
		x.Rule, y.Rule = nil, nil
		return reflect.DeepEqual(x, y)
	})
}

func jsonOf(t *testing.T, res *Result, indent string) string {
	t.Helper()
	raw, err := json.MarshalIndent(res.Decisions, "", indent)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
