//go:build integration

package operator_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
	"github.com/meshfleet/meshfleet/tests/dashboards"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// meshTraffic records Istio's standard request metrics as the clients of
// each cluster would report them, every tick, with a per-cluster share of
// failed requests (gRPC UNAVAILABLE), until the test ends. A cluster not
// set sends nothing.
type meshTraffic struct {
	mesh *dashboards.MeshMetrics
	mu   sync.Mutex
	// failEvery: cluster -> every n-th request fails (0: none fails).
	failEvery map[string]int
}

func startMeshTraffic(t *testing.T) (*meshTraffic, string) {
	m := &meshTraffic{mesh: dashboards.NewMeshMetrics(), failEvery: map[string]int{}}
	addr := m.mesh.Serve(t)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n++
			m.mu.Lock()
			for cl, every := range m.failEvery {
				status := 0
				if every > 0 && n%every == 0 {
					status = 14
				}
				m.mesh.Observe(dashboards.Request{SourceWorkload: "client", SourceNamespace: "apps", SourceCluster: cl,
					Service: "server.apps.svc.cluster.local", ServiceName: "server", ServiceNamespace: "apps",
					DestWorkload: "server", DestNamespace: "apps", DestVersion: "v1", DestCluster: cl,
					GRPCStatus: status, Duration: time.Millisecond})
			}
			m.mu.Unlock()
		}
	}()
	return m, addr
}

// set makes cluster's clients send requests, every n-th failing (0: none).
func (m *meshTraffic) set(cluster string, failEvery int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failEvery[cluster] = failEvery
}

// TestFleetRolloutPrometheusGate: the batches' gate reads the success rate
// from a real Prometheus scraping the clients' istio_requests_total (served
// by the test, per source cluster). With istiod-<new> ready every time, only
// the rate decides: a custom query with no data rolls the canary back at
// the timeout; a canary whose clients fail one request in two is rolled
// back at once with the rate in status.rollout and the event, the second
// batch never moved; a healthy fleet passes batch by batch on the default
// query.
func TestFleetRolloutPrometheusGate(t *testing.T) {
	remotes := []string{"remote1", "remote2"}
	traffic, target := startMeshTraffic(t)
	prom := dashboards.StartPrometheus(t, map[string][]string{"mesh-clients": {target}}, time.Second)
	h, rh := startRevisionMesh(t, remotes...)
	prom.WaitTargetsUp(t, time.Minute)

	const timeout = 30
	spec := func(v, promGate string) string {
		return fmt.Sprintf(`{"version":%q,"clusterName":"primary","security":{"selfSigned":true},"multiCluster":{"mode":"flatNetwork"},
			"updateStrategy":{"type":"RevisionBased","inactiveRevisionDeletionGracePeriodSeconds":1,
			"rollout":{"batches":[{"name":"canary","clusters":["remote1"]},{"name":"wave-1","clusters":["remote2"]}],
			"gate":{"bakeSeconds":3,"timeoutSeconds":%d,"prometheus":%s}}}}`, v, timeout, promGate)
	}
	defaultGate := fmt.Sprintf(`{"address":%q,"minSuccessRate":"0.95","minRequests":20}`, prom.URL)
	customGate := fmt.Sprintf(`{"address":%q,"minSuccessRate":"0.95","query":%q}`, prom.URL,
		`sum(increase(istio_requests_total{reporter="source",source_cluster=~"{{ clusters }}",grpc_response_status="0"}[{{ window }}])) / sum(increase(istio_requests_total{reporter="source",source_cluster=~"{{ clusters }}"}[{{ window }}]))`)
	installFleet(h, rh, spec("1.29.6", defaultGate), remotes)
	tags := func(want map[string]string) func() error { return func() error { return defaultTags(rh, want) } }
	old := map[string]string{"primary": "istiod-1-29-6", "remote1": "istiod-1-29-6", "remote2": "istiod-1-29-6"}
	eventually(t, "every cluster's default tag on 1-29-6", tags(old))

	// upgrade sets spec.version to 1.30.3 with gate and marks istiod-1-30-3
	// rolled out as soon as it is deployed: its readiness never holds the
	// gate.
	upgrade := func(gate string) {
		t.Helper()
		h.applyIstio(ns, "istio", spec("1.30.3", gate))
		eventually(t, "istiod-1-30-3 deployed", func() error {
			return h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod-1-30-3"}, &appsv1.Deployment{})
		})
		h.rollOut("istiod-1-30-3")
	}
	halted := func(what string, within time.Duration) *v1beta1.RolloutStatus {
		t.Helper()
		var st *v1beta1.RolloutStatus
		testenv.Eventually(t, within, what, func() error {
			st = h.istio("istio").Status.Rollout
			if st == nil || st.Phase != "Halted" || st.Batches[0].Phase != "RolledBack" || st.Batches[1].Phase != "Pending" || st.Batches[1].MovedAt != nil {
				return fmt.Errorf("status.rollout = %+v", st)
			}
			return tags(old)()
		})
		return st
	}
	back := func() {
		t.Helper()
		h.applyIstio(ns, "istio", spec("1.29.6", defaultGate))
		eventually(t, "istiod-1-30-3 removed", func() error {
			if err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod-1-30-3"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("istiod-1-30-3 still there (%v)", err)
			}
			return nil
		})
	}

	// 1. No data: the canary's clients send nothing yet; the custom query
	// returns no sample, so the batch cannot pass and is moved back at the
	// timeout, with the query in the reason.
	upgrade(customGate)
	st := halted("the canary rolled back at the timeout for want of data", 2*timeout*time.Second+time.Minute)
	b := st.Batches[0]
	if took := b.DecidedAt.Sub(b.MovedAt.Time); took < timeout*time.Second || !strings.Contains(b.Reason, "no success rate: Prometheus at "+prom.URL+" returned no data for sum(increase(istio_requests_total{reporter=\"source\",source_cluster=~\"remote1\"") {
		t.Errorf("canary decided after %v: %q; want after the %ds timeout, no data from the expanded query", took, b.Reason, timeout)
	}
	t.Logf("no data:\n%s", tagrollout.StatusTable(st))
	back()

	// 2. A failing canary: remote1's clients fail one request in two; the
	// rate falls below 95% and the batch is moved back before the timeout.
	traffic.set("remote1", 2)
	traffic.set("remote2", 0)
	upgrade(defaultGate)
	st = halted("the canary rolled back on its success rate", 2*timeout*time.Second)
	b = st.Batches[0]
	if took := b.DecidedAt.Sub(b.MovedAt.Time); took >= timeout*time.Second || !strings.Contains(b.Reason, "below 95.00%") {
		t.Errorf("canary decided after %v: %q; want before the timeout, on a success rate near 50%% below 95%%", took, b.Reason)
	}
	t.Logf("failing canary:\n%s", tagrollout.StatusTable(st))
	eventually(t, "a RolloutBatchRolledBack event with the rate", func() error {
		var evs eventsv1.EventList
		if err := rh.clients["primary"].List(h.ctx, &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "RolloutBatchRolledBack" && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, "batch canary: gate failed (success rate") {
				return nil
			}
		}
		return fmt.Errorf("none among %d events", len(evs.Items))
	})
	back()

	// 3. A healthy fleet: every batch passes on the default query, in order,
	// then the primary.
	traffic.set("remote1", 0)
	upgrade(defaultGate)
	testenv.Eventually(t, 3*timeout*time.Second, "every batch passed, every cluster's default tag on 1-30-3", func() error {
		st = h.istio("istio").Status.Rollout
		if st == nil || st.Phase != "Done" || st.To != "1-30-3" {
			return fmt.Errorf("status.rollout = %+v", st)
		}
		if err := tags(map[string]string{"primary": "istiod-1-30-3", "remote1": "istiod-1-30-3", "remote2": "istiod-1-30-3"})(); err != nil {
			return fmt.Errorf("%v; RemoteIstios: %s", err, remotePhases(h))
		}
		return nil
	})
	t.Logf("healthy fleet:\n%s", tagrollout.StatusTable(st))
	for _, b := range st.Batches {
		if b.Phase != "Passed" || !strings.Contains(b.Reason, "success rate 100.00% over") || b.DecidedAt.Sub(b.MovedAt.Time) < 3*time.Second {
			t.Errorf("batch %s: %s after %v, %q; want Passed after the 3s bake on a 100%% success rate", b.Name, b.Phase, b.DecidedAt.Sub(b.MovedAt.Time), b.Reason)
		}
	}
}

// remotePhases prints each RemoteIstio's phase and conditions, for a
// failure message.
func remotePhases(h *harness) string {
	var list v1beta1.RemoteIstioList
	if err := h.direct.List(h.ctx, &list); err != nil {
		return err.Error()
	}
	var out []string
	for _, ri := range list.Items {
		out = append(out, fmt.Sprintf("%s %s [%s]", ri.Name, ri.Status.Phase, formatConditions(ri.Status.Conditions)))
	}
	return strings.Join(out, "; ")
}
