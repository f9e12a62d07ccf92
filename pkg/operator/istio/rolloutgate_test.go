package istio

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// TestObserveRateUnreachable: a Prometheus that does not answer is a
// RateProblem naming its address, not an error and not a rate.
func TestObserveRateUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	for _, q := range []string{"", `sum(x{c=~"{{ clusters }}"})`} {
		o := observeRate(context.Background(), &v1beta1.RolloutPrometheusGate{Address: addr, Query: q, MinSuccessRate: "0.9"}, 0.9, 20, []string{"west"}, time.Minute, time.Now())
		if !strings.Contains(o.RateProblem, "Prometheus at "+addr) || !strings.Contains(o.RateProblem, "connection refused") || o.Requests != 0 {
			t.Errorf("query %q: %+v", q, o)
		}
	}
}

// TestGateOf: the CRD's decimal string and the default minimum of
// requests; a custom query that cannot be expanded fails PreCheckPassed.
func TestGateOf(t *testing.T) {
	g, err := gateOf(v1beta1.RolloutGate{TimeoutSeconds: 60, BakeSeconds: 10, Prometheus: &v1beta1.RolloutPrometheusGate{Address: "http://p", MinSuccessRate: "0.995"}})
	if err != nil || !g.RateRequired || g.MinSuccessRate != 0.995 || g.MinRequests != defaultMinRequests || g.Bake != 10*time.Second {
		t.Errorf("gate %+v, %v", g, err)
	}
	g, err = gateOf(v1beta1.RolloutGate{TimeoutSeconds: 60, Prometheus: &v1beta1.RolloutPrometheusGate{Address: "http://p", MinSuccessRate: "1", Query: "sum(x)"}})
	if err != nil || g.MinRequests != 0 || g.MinSuccessRate != 1 {
		t.Errorf("gate %+v, %v", g, err)
	}
	ro := &v1beta1.FleetRollout{Batches: []v1beta1.RolloutBatch{{Name: "a", Clusters: []string{"x"}}},
		Gate: v1beta1.RolloutGate{TimeoutSeconds: 60, Prometheus: &v1beta1.RolloutPrometheusGate{Address: "http://p", MinSuccessRate: "0.9", Query: "sum(x{c=~\"{{ cluster }}\"})"}}}
	if msg := rolloutProblem(ro); !strings.Contains(msg, "spec.updateStrategy.rollout: gate.prometheus.query") || !strings.Contains(msg, "placeholders are {{ clusters }} and {{ window }}") {
		t.Errorf("problem %q", msg)
	}
}
