package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
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
	got, err := fetchLocality(context.Background(), srv.URL, nil)
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
