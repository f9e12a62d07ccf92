package rulesync

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// benchTopology is 1,000 services in each of 3 clusters (one region each,
// r1 with two zones), the shape of tests/bench/locality.
func benchTopology(n int, r1 string) *topology.Topology {
	t := &topology.Topology{Clusters: []topology.Cluster{
		{Name: "c1", Nodes: []topology.Node{{Name: "a", Locality: topology.Locality{Region: r1, Zone: "z1"}}, {Name: "b", Locality: topology.Locality{Region: r1, Zone: "z2"}}}},
		{Name: "c2", Nodes: []topology.Node{{Name: "c", Locality: topology.Locality{Region: "r2", Zone: "z3"}}}},
		{Name: "c3", Nodes: []topology.Node{{Name: "d", Locality: topology.Locality{Region: "r3", Zone: "z4"}}}},
	}}
	for i := range n {
		name := fmt.Sprintf("svc-%04d", i)
		t.Services = append(t.Services, topology.Service{Namespace: "bench", Name: name, Hostname: name + ".bench.svc.cluster.local",
			Endpoints: []topology.EndpointGroup{
				{Cluster: "c1", Locality: topology.Locality{Region: r1, Zone: "z1"}, Ready: 1},
				{Cluster: "c1", Locality: topology.Locality{Region: r1, Zone: "z2"}, Ready: 1},
				{Cluster: "c2", Locality: topology.Locality{Region: "r2", Zone: "z3"}, Ready: 1},
				{Cluster: "c3", Locality: topology.Locality{Region: "r3", Zone: "z4"}, Ready: 1},
			}})
	}
	return t
}

// BenchmarkTranslateAndPlan is the server's own part of a write after a
// region label change: translate 1,000 (and 10,000) services and plan
// against the rules written for the other labelling (every rule changes).
func BenchmarkTranslateAndPlan(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchTranslateAndPlan(b, n) })
	}
}

func benchTranslateAndPlan(b *testing.B, n int) {
	tops := []*topology.Topology{benchTopology(n, "r1"), benchTopology(n, "r1b")}
	lives := make([]map[string]Live, 2)
	for i, top := range tops {
		res, err := locality.Translate(top, locality.Policy{})
		if err != nil {
			b.Fatal(err)
		}
		lives[i] = map[string]Live{}
		for _, r := range res.Rules() {
			h, err := Hash(r)
			if err != nil {
				b.Fatal(err)
			}
			lives[i][r.Metadata.Name] = Live{Name: r.Metadata.Name, UID: "u", Hash: h}
		}
	}
	members := map[string]bool{"c1": true, "c2": true, "c3": true}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := locality.Translate(tops[i%2], locality.Policy{})
		if err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		p, err := Decide(lives[(i+1)%2], res.Rules(), members)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Update) != n {
			b.Fatalf("updates %d", len(p.Update))
		}
		b.ReportMetric(float64(mid.Sub(start).Microseconds()), "translate-µs")
		b.ReportMetric(float64(time.Since(mid).Microseconds()), "plan-µs")
	}
}

// BenchmarkTranslateGroupPlan is the same with the rules grouped (the
// default): translate, group, plan.
func BenchmarkTranslateGroupPlan(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tops := []*topology.Topology{benchTopology(n, "r1"), benchTopology(n, "r1b")}
			lives := make([]map[string]Live, 2)
			for i, top := range tops {
				res, err := locality.Translate(top, locality.Policy{})
				if err != nil {
					b.Fatal(err)
				}
				_, rules, err := Group(res, DefaultGroupMin)
				if err != nil {
					b.Fatal(err)
				}
				lives[i] = liveOfRules(b, rules)
			}
			members := map[string]bool{"c1": true, "c2": true, "c3": true}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				res, err := locality.Translate(tops[i%2], locality.Policy{})
				if err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				_, rules, err := Group(res, DefaultGroupMin)
				if err != nil {
					b.Fatal(err)
				}
				grouped := time.Now()
				p, err := Decide(lives[(i+1)%2], rules, members)
				if err != nil {
					b.Fatal(err)
				}
				if p.Writes() != 1 {
					b.Fatalf("writes %d", p.Writes())
				}
				b.ReportMetric(float64(mid.Sub(start).Microseconds()), "translate-µs")
				b.ReportMetric(float64(grouped.Sub(mid).Microseconds()), "group-µs")
				b.ReportMetric(float64(time.Since(grouped).Microseconds()), "plan-µs")
			}
		})
	}
}

func liveOfRules(b *testing.B, rules []*locality.Rule) map[string]Live {
	out := map[string]Live{}
	for _, r := range rules {
		h, err := Hash(r)
		if err != nil {
			b.Fatal(err)
		}
		out[r.Metadata.Name] = Live{Name: r.Metadata.Name, UID: "u", Hash: h}
	}
	return out
}

// BenchmarkOneServiceChange is the server's own work for a change of one
// Service's endpoints at 1,000 and 10,000 Services (the bench's shape):
// "full" translates, places, groups and plans everything (the path before
// decision 64, and still the path of a change every rule depends on),
// "incremental" translates, places, groups and plans that Service only.
func BenchmarkOneServiceChange(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		tops := []*topology.Topology{benchTopology(n, "r1"), benchTopology(n, "r1")}
		// svc-0000 loses its ready endpoint in r2 in the second topology.
		tops[1].Services = slices.Clone(tops[1].Services)
		s := tops[1].Services[0]
		s.Endpoints = slices.Clone(s.Endpoints)
		s.Endpoints[2].Ready, s.Endpoints[2].NotReady = 0, 1
		tops[1].Services[0] = s
		delta := topology.Delta{Services: []string{s.Key()}}
		members := map[string]bool{"c1": true, "c2": true, "c3": true}
		policy := locality.Policy{Failover: []locality.Failover{{From: "r1", To: "r2"}}}
		b.Run(fmt.Sprintf("full/%d", n), func(b *testing.B) {
			res, _ := locality.Translate(tops[0], policy)
			_, rules, _ := Group(Place(res, "istio-system"), DefaultGroupMin)
			live := liveOfRules(b, rules)
			for i := 0; b.Loop(); i++ {
				res, err := locality.Translate(tops[(i+1)%2], policy)
				if err != nil {
					b.Fatal(err)
				}
				_, rules, err := Group(Place(res, "istio-system"), DefaultGroupMin)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Decide(live, rules, members); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("incremental/%d", n), func(b *testing.B) {
			res, _ := locality.Translate(tops[0], policy)
			p, _, _ := (&placed{rulesNamespace: "istio-system", groupMin: DefaultGroupMin}).update(res, topology.Delta{All: true})
			_, rules := p.result()
			live := liveOfRules(b, rules)
			hashes := newHashCache()
			for i := 0; b.Loop(); i++ {
				next, d, err := locality.TranslateDelta(res, tops[(i+1)%2], policy, delta)
				if err != nil || d.All {
					b.Fatal(err, d)
				}
				np, affected, err := p.update(next, d)
				if err != nil {
					b.Fatal(err)
				}
				var desired []*locality.Rule
				for name := range affected {
					if r := np.ruleNamed(name); r != nil {
						desired = append(desired, r)
					}
				}
				sub := map[string]Live{}
				for name := range affected {
					if l, ok := live[name]; ok {
						sub[name] = l
					}
				}
				if _, err := decide(sub, desired, members, hashes.rule); err != nil {
					b.Fatal(err)
				}
				res, p = next, np
			}
		})
	}
}
