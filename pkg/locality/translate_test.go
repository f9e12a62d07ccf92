package locality

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/topology"
)

func TestComputeOrders(t *testing.T) {
	ms := func(n int) metav1.Duration { return metav1.Duration{Duration: time.Duration(n) * time.Millisecond} }
	tests := []struct {
		name      string
		regions   []string
		explicit  []Failover
		distances []Distance
		from      string
		want      string
	}{
		{"default: common prefix then name", []string{"eu-west-1", "us-east-1", "us-east-2", "ap-south-1"}, nil, nil, "us-east-1", "us-east-2 ap-south-1 eu-west-1"},
		{"rtt nearest first", []string{"a", "b", "c"}, nil, []Distance{{From: "a", To: "b", RTT: ms(50)}, {From: "a", To: "c", RTT: ms(5)}}, "a", "c b"},
		{"rtt is symmetric", []string{"a", "b", "c"}, nil, []Distance{{From: "b", To: "a", RTT: ms(50)}, {From: "c", To: "a", RTT: ms(5)}}, "a", "c b"},
		{"measured before unmeasured", []string{"a", "ab", "z"}, nil, []Distance{{From: "a", To: "z", RTT: ms(100)}}, "a", "z ab"},
		{"explicit before rtt", []string{"a", "b", "c"}, []Failover{{From: "a", To: "b"}}, []Distance{{From: "a", To: "b", RTT: ms(50)}, {From: "a", To: "c", RTT: ms(5)}}, "a", "b c"},
		{"explicit region unknown to topology", []string{"a"}, []Failover{{From: "a", To: "x"}}, nil, "a", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range ComputeOrders(tt.regions, tt.explicit, tt.distances)[tt.from] {
				got = append(got, r.Region)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("order from %s = %v, want %s", tt.from, got, tt.want)
			}
		})
	}
}

func TestParseFailoverAnnotation(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "r1=r2, r2 = r1", want: "r1>r2 r2>r1"},
		{in: "", want: ""},
		{in: "r1", err: "not of the form from=to"},
		{in: "r1=r1", err: "to itself"},
		{in: "r1=r2,r1=r3", err: "given twice"},
	}
	for _, tt := range tests {
		got, err := ParseFailoverAnnotation(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseFailoverAnnotation(%q) error = %v, want one containing %q", tt.in, err, tt.err)
			}
			continue
		}
		var parts []string
		for _, f := range got {
			parts = append(parts, f.From+">"+f.To)
		}
		if err != nil || strings.Join(parts, " ") != tt.want {
			t.Errorf("ParseFailoverAnnotation(%q) = %v, %v; want %s", tt.in, parts, err, tt.want)
		}
	}
}

// TestTranslateFailoverTarget covers the choice of target region per
// service: ready endpoints first, then any, none when alone.
func TestTranslateFailoverTarget(t *testing.T) {
	ep := func(region string, ready, notReady int) topology.EndpointGroup {
		return topology.EndpointGroup{Cluster: "c", Locality: topology.Locality{Region: region, Zone: region + "z"}, Ready: ready, NotReady: notReady}
	}
	tests := []struct {
		name      string
		endpoints []topology.EndpointGroup
		want      string // failover entries "from>to"
		skipped   string
	}{
		{"all ready: nearest", []topology.EndpointGroup{ep("a", 1, 0), ep("b", 1, 0), ep("c", 1, 0)}, "a>b b>a c>a", ""},
		{"nearest not ready: next", []topology.EndpointGroup{ep("a", 1, 0), ep("b", 0, 1), ep("c", 1, 0)}, "a>c b>a c>a", ""},
		{"none ready: nearest with endpoints", []topology.EndpointGroup{ep("a", 0, 1), ep("b", 0, 1)}, "a>b b>a c>a", ""},
		{"one region only", []topology.EndpointGroup{ep("a", 2, 0)}, "b>a c>a", ""},
		{"no endpoints", nil, "", "no endpoints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := &topology.Topology{
				Clusters: []topology.Cluster{{Name: "c", Nodes: []topology.Node{
					{Name: "a", Locality: topology.Locality{Region: "a"}},
					{Name: "b", Locality: topology.Locality{Region: "b"}},
					{Name: "c", Locality: topology.Locality{Region: "c"}},
				}}},
				Services: []topology.Service{{Namespace: "ns", Name: "s", Hostname: "s.ns.svc.cluster.local", Endpoints: tt.endpoints}},
			}
			res, err := Translate(topo, Policy{})
			if err != nil {
				t.Fatal(err)
			}
			d := res.Decisions[0]
			if tt.skipped != "" {
				if d.Rule != nil || !strings.Contains(d.Skipped, tt.skipped) {
					t.Fatalf("want skipped %q, got rule %v skipped %q", tt.skipped, d.Rule != nil, d.Skipped)
				}
				return
			}
			var got []string
			for _, f := range d.Rule.Spec.GetTrafficPolicy().GetLoadBalancer().GetLocalityLbSetting().GetFailover() {
				got = append(got, f.From+">"+f.To)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("failover = %v, want %s (reasons %v)", got, tt.want, d.Reasons)
			}
			if d.Rule.Spec.GetTrafficPolicy().GetOutlierDetection() == nil {
				t.Error("generated rule has no outlierDetection; istiod would not fail over")
			}
		})
	}
}

// TestTranslateSubsetsOnlyUserRules: a user's rule for the exact host
// with subsets only (Flagger's podinfo-primary, meshctl canary's reviews)
// gets the locality rule beside it, in its namespace, for istiod to merge
// (istiod never merges across namespaces, and a rule in the service's
// namespace hides one in the root namespace); a user's rule with a traffic
// policy, a workload selector, an exportTo or a wildcard host, or one in
// another namespace than the Service's, still wins.
func TestTranslateSubsetsOnlyUserRules(t *testing.T) {
	svc := func(name string) topology.Service {
		return topology.Service{Namespace: "shop", Name: name, Hostname: name + ".shop.svc.cluster.local",
			Endpoints: []topology.EndpointGroup{{Cluster: "c", Locality: topology.Locality{Region: "r1", Zone: "z1"}, Ready: 1}}}
	}
	topo := &topology.Topology{
		ConfigCluster: "c",
		Clusters:      []topology.Cluster{{Name: "c", Nodes: []topology.Node{{Name: "n", Locality: topology.Locality{Region: "r1", Zone: "z1"}}}}},
		Services:      []topology.Service{svc("podinfo-primary"), svc("reviews"), svc("tuned"), svc("wild"), svc("elsewhere")},
		UserDestinationRules: []topology.UserDestinationRule{
			{Cluster: "c", Namespace: "shop", Name: "podinfo-primary", Host: "podinfo-primary", SubsetsOnly: true},
			{Cluster: "c", Namespace: "shop", Name: "reviews", Host: "reviews.shop.svc.cluster.local", SubsetsOnly: true},
			{Cluster: "c", Namespace: "shop", Name: "tuned", Host: "tuned"},
			{Cluster: "c", Namespace: "other", Name: "elsewhere", Host: "elsewhere.shop.svc.cluster.local", SubsetsOnly: true},
			{Cluster: "c", Namespace: "shop", Name: "wild", Host: "*.shop.svc.cluster.local", SubsetsOnly: true},
		},
	}
	res, err := Translate(topo, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"shop/podinfo-primary": "merged into shop/podinfo-primary",
		"shop/reviews":         "merged into shop/reviews",
		"shop/tuned":           "skipped",
		"shop/wild":            "skipped",
		"shop/elsewhere":       "skipped",
	}
	for _, d := range res.Decisions {
		got := "skipped"
		if d.Rule != nil {
			got = "merged into " + d.Rule.Metadata.Annotations[AnnotationMergedWith]
			if d.Rule.Metadata.Namespace != "shop" || d.Rule.Spec.GetTrafficPolicy().GetOutlierDetection() == nil ||
				!d.Rule.Spec.GetTrafficPolicy().GetLoadBalancer().GetLocalityLbSetting().GetEnabled().GetValue() {
				t.Errorf("%s: rule %s/%s %v: want it in the user's namespace shop, with the locality policy", d.Service, d.Rule.Metadata.Namespace, d.Rule.Metadata.Name, d.Rule.Spec)
			}
		} else if !strings.Contains(d.Skipped, "user config wins") {
			got = "skipped: " + d.Skipped
		}
		if got != want[d.Service] {
			t.Errorf("%s: %s, want %s (reasons %v)", d.Service, got, want[d.Service], d.Reasons)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	bad := []Policy{
		{Failover: []Failover{{From: "a"}}},
		{Failover: []Failover{{From: "a", To: "a"}}},
		{Failover: []Failover{{From: "a", To: "b"}, {From: "a", To: "c"}}},
		{Distances: []Distance{{From: "a"}}},
	}
	for i, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("policy %d: Validate() = nil, want an error", i)
		}
	}
}
