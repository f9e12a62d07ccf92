package istio

import (
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

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
		o := observeRate(t.Context(), &v1beta1.RolloutPrometheusGate{Address: addr, Query: q, MinSuccessRate: "0.9"}, 0.9, 20, []string{"west"}, time.Minute, time.Now())
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
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(scheme(t)).Build()}
	if msg := r.rolloutProblem(t.Context(), &v1beta1.Istio{}, ro); !strings.Contains(msg, "spec.updateStrategy.rollout: gate.prometheus.query") || !strings.Contains(msg, "placeholders are {{ clusters }} and {{ window }}") {
		t.Errorf("problem %q", msg)
	}
}

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := v1beta1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRolloutProblemClusterSelector: a cluster that two batches choose,
// by RemoteIstio labels or by the primary's (the Istio resource's), fails
// PreCheckPassed naming the cluster and both batches; RemoteIstios of
// another control plane are not chosen.
func TestRolloutProblemClusterSelector(t *testing.T) {
	ri := func(name, cluster, ref string, labels map[string]string) *v1beta1.RemoteIstio {
		return &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system", Labels: labels},
			Spec: v1beta1.RemoteIstioSpec{ClusterName: cluster, IstioRef: ref}}
	}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(
		ri("west", "", "", map[string]string{"wave": "canary", "region": "eu"}),
		ri("r-east", "east", "", map[string]string{"wave": "1", "region": "us"}),
		ri("other", "other", "another-istio", map[string]string{"wave": "1", "region": "eu"}),
	).Build()
	r := &Reconciler{Client: c}
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system", Labels: map[string]string{"region": "eu"}},
		Spec: v1beta1.IstioSpec{ClusterName: "primary"}}
	sel := func(k, v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
	gate := v1beta1.RolloutGate{TimeoutSeconds: 60}
	for want, batches := range map[string][]v1beta1.RolloutBatch{
		"": {{Name: "canary", ClusterSelector: sel("wave", "canary")}, {Name: "wave-1", ClusterSelector: sel("wave", "1")}},
		"spec.updateStrategy.rollout: cluster west is in batch canary (chosen by clusterSelector wave=canary) and in batch eu (chosen by clusterSelector region=eu)": {
			{Name: "canary", ClusterSelector: sel("wave", "canary")}, {Name: "eu", ClusterSelector: sel("region", "eu")}},
		"cluster primary is in batch first (listed in clusters) and in batch eu (chosen by clusterSelector region=eu)": {
			{Name: "first", Clusters: []string{"primary"}}, {Name: "eu", ClusterSelector: sel("region", "eu")}},
	} {
		got := r.rolloutProblem(t.Context(), ist, &v1beta1.FleetRollout{Batches: batches, Gate: gate})
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("problem %q, want %q", got, want)
		}
	}
	members, err := r.rolloutMembers(t.Context(), ist, "primary")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := planOf(&v1beta1.FleetRollout{Batches: []v1beta1.RolloutBatch{{Name: "eu", ClusterSelector: sel("region", "eu")}, {Name: "us", ClusterSelector: sel("region", "us")}}, Gate: gate},
		"a", "b", nil, members)
	if err != nil || len(plan.Batches) != 2 || strings.Join(plan.Batches[0].Clusters, ",") != "primary,west" || strings.Join(plan.Batches[1].Clusters, ",") != "east" {
		t.Errorf("plan %+v, %v", plan.Batches, err)
	}
	// A batch that moved keeps the clusters status.rollout recorded.
	st := &v1beta1.RolloutStatus{From: "a", To: "b", Batches: []v1beta1.RolloutBatchStatus{{Name: "eu", Clusters: []string{"west"}, Phase: "Gating"}, {Name: "us", Phase: "Pending"}}}
	plan, err = planOf(&v1beta1.FleetRollout{Batches: []v1beta1.RolloutBatch{{Name: "eu", ClusterSelector: sel("region", "eu")}, {Name: "us", ClusterSelector: sel("region", "us")}}, Gate: gate},
		"a", "b", st, members)
	if err != nil || strings.Join(plan.Batches[0].Clusters, ",") != "west" || strings.Join(plan.Batches[1].Clusters, ",") != "east" {
		t.Errorf("plan %+v, %v", plan.Batches, err)
	}
}
