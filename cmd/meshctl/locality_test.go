package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// TestLocalityReadsServerState serves what the locality server's debug
// endpoint sends (rulesync.DebugState) and checks that meshctl locality
// shows the writer, the member not synced, the held rules and a conflict.
func TestLocalityReadsServerState(t *testing.T) {
	st := rulesync.DebugState{
		Leader: true, Namespace: "istio-system", Rules: 2,
		Members:    []rulesync.Member{{Name: "primary", Synced: true}, {Name: "remote1", Synced: false}},
		Held:       []string{"meshfleet-locality.echo.default"},
		HeldReason: "member clusters not synced since start: remote1",
		Conflicts:  []string{"DestinationRule istio-system/meshfleet-locality.other.default exists and was not made by meshfleet"},
		Decisions: []locality.Decision{{Service: "default/echo", Host: "echo.default.svc.cluster.local", Rule: &locality.Rule{
			APIVersion: "networking.istio.io/v1", Kind: "DestinationRule",
			Metadata: locality.RuleMeta{Name: "meshfleet-locality.echo.default", Namespace: "istio-system"},
			Spec: &networking.DestinationRule{Host: "echo.default.svc.cluster.local", TrafficPolicy: &networking.TrafficPolicy{
				LoadBalancer: &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{
					Failover: []*networking.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2"}}}}}},
		}}},
	}
	body, err := yaml.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	got, err := fetchLocality(t.Context(), srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := printLocality(&out, "table", got); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"writing; 2 rules in namespace istio-system",
		"member clusters: primary, remote1",
		"not synced since start (unreachable or slow): remote1",
		"1 rules held as they are: member clusters not synced since start: remote1",
		"conflict: DestinationRule istio-system/meshfleet-locality.other.default",
		"default/echo  meshfleet-locality.echo.default  r1→r2",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestLocalityShowsIstiodSignals runs the real translation over a topology
// with each signal istiod reads differently from a naive reading, and
// checks that meshctl locality says so: a user rule in a remote (warned,
// rule still generated), an "off" Service covered by a user rule (both
// reasons), a traffic distribution on a remote's copy only, and a
// duplicate locality (listed first, with the fix).
func TestLocalityShowsIstiodSignals(t *testing.T) {
	ep := func(cluster, label, source string) topology.EndpointGroup {
		return topology.EndpointGroup{Cluster: cluster, Locality: topology.SplitLocalityLabel(label), Label: label, Source: source, Ready: 1}
	}
	topo := &topology.Topology{
		ConfigCluster: "primary",
		Clusters:      []topology.Cluster{{Name: "primary"}, {Name: "remote1"}},
		Services: []topology.Service{
			{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.cluster.local", Endpoints: []topology.EndpointGroup{
				ep("remote1", "r1/z1", topology.SourcePodLabelLegacy), ep("remote1", "r1/z1/", topology.SourceNode), ep("primary", "r2/z2/", topology.SourceNode)}},
			{Namespace: "shop", Name: "pay", Hostname: "pay.shop.svc.cluster.local", Annotations: map[string]string{locality.AnnotationLocality: "off"},
				Endpoints: []topology.EndpointGroup{ep("primary", "r2/z2/", topology.SourceNode)}},
			{Namespace: "shop", Name: "ship", Hostname: "ship.shop.svc.cluster.local",
				IgnoredTrafficDistribution: []string{"remote1's copy sets spec.trafficDistribution PreferClose; istiod uses primary's copy"},
				Endpoints:                  []topology.EndpointGroup{ep("primary", "r2/z2/", topology.SourceNode), ep("remote1", "r1/z1/", topology.SourceNode)}},
		},
		UserDestinationRules: []topology.UserDestinationRule{
			{Cluster: "remote1", Namespace: "shop", Name: "cart-mine", Host: "cart"},
			{Cluster: "primary", Namespace: "shop", Name: "pay-mine", Host: "pay"},
		},
	}
	res, err := locality.Translate(topo, locality.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	st := rulesync.DebugState{Leader: true, Namespace: "istio-system", Decisions: res.Decisions, DuplicateLocality: rulesync.DuplicateLocalityOf(res.Decisions)}
	body, err := yaml.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	got, err := fetchLocality(t.Context(), srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := printLocality(&out, "table", got); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"proxyless gRPC hazard: shop/cart: istiod sends one locality twice",
		`proxyless gRPC hazard: locality r1/z1 reaches istiod as "r1/z1" (pod label istio-locality in remote1) and "r1/z1/" (node labels in remote1)`,
		"fix: give every endpoint of the service its locality from one source",
		"shop/cart  meshfleet-locality.cart.shop",
		"warning: user DestinationRule remote1/shop/cart-mine covers host cart.shop.svc.cluster.local but is not in cluster primary",
		"skipped: annotation meshfleet.io/locality: off on Service shop/pay; user DestinationRule primary/shop/pay-mine covers host pay.shop.svc.cluster.local",
		"warning: Service shop/ship: remote1's copy sets spec.trafficDistribution PreferClose; istiod uses primary's copy",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
