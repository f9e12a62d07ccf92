package xds

import (
	"fmt"
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

// BenchmarkTranslateAndUpdate is the server's own part of a push after a
// region label change: translate 1,000 services and re-wrap every rule.
func BenchmarkTranslateAndUpdate(b *testing.B) {
	tops := []*topology.Topology{benchTopology(1000, "r1"), benchTopology(1000, "r1b")}
	c := newMCPCache(time.Second)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := locality.Translate(tops[i%2], locality.Policy{})
		if err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		changed, _, err := c.update(res.Rules(), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if i > 0 && len(changed) != 1000 {
			b.Fatalf("changed %d", len(changed))
		}
		b.ReportMetric(float64(mid.Sub(start).Microseconds()), "translate-µs")
		b.ReportMetric(float64(time.Since(mid).Microseconds()), "update-µs")
	}
}
