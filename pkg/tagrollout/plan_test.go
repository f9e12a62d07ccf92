package tagrollout

import (
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)

func fleet() Rollout {
	return Rollout{From: "1-30-3", To: "1-31-0",
		Batches: []Batch{{Name: "canary", Clusters: []string{"west"}}, {Name: "wave-1", Clusters: []string{"east", "north"}}, {Name: "wave-2", Clusters: []string{"primary"}}},
		Gate:    Gate{MinSuccessRate: 0.99, MinRequests: 100, Bake: 30 * time.Second, Timeout: 2 * time.Minute}}
}

var healthy = Observation{IstiodReady: true, Proxies: 4, Acked: 4, ProxiesExpected: 4, Requests: 1000, SuccessRate: 1}

// step is one call of Next: the time, what was observed, and what is expected.
type step struct {
	at     time.Duration
	obs    Observation
	kind   Kind
	batch  int
	rev    string
	reason string
}

func run(t *testing.T, r Rollout, steps []step) Rollout {
	t.Helper()
	for i, s := range steps {
		a, st, err := Next(r, t0.Add(s.at), s.obs)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if a.Kind != s.kind || a.Batch != s.batch || a.Revision != s.rev || !strings.Contains(a.Reason, s.reason) {
			t.Fatalf("step %d at %v: got %+v, want %s batch %d revision %q reason containing %q", i, s.at, a, s.kind, s.batch, s.rev, s.reason)
		}
		r.Status = st
	}
	return r
}

func TestHealthyRolloutMovesBatchByBatch(t *testing.T) {
	r := run(t, fleet(), []step{
		{0, Observation{}, MoveTag, 0, "1-31-0", "batch canary: move the default tag to 1-31-0"},
		{time.Second, Observation{Proxies: 0}, Wait, 0, "", "istiod-1-31-0 not ready"},
		{5 * time.Second, Observation{IstiodReady: true, Proxies: 2, Acked: 2, ProxiesExpected: 4}, Wait, 0, "", "2 of 4 proxies ACKed"},
		{10 * time.Second, Observation{IstiodReady: true, Proxies: 4, Acked: 4, ProxiesExpected: 4, Requests: 40, SuccessRate: 1}, Wait, 0, "", "only 40 requests, want 100"},
		{15 * time.Second, healthy, Wait, 0, "", "baking, 15s left"},
		{31 * time.Second, healthy, MoveTag, 1, "1-31-0", "batch wave-1"},
		{62 * time.Second, healthy, MoveTag, 2, "1-31-0", "batch wave-2"},
		{93 * time.Second, healthy, Done, 0, "", "every batch on 1-31-0"},
	})
	for i, s := range r.Status {
		if s.Phase != Passed {
			t.Errorf("batch %d: %s", i, s.Phase)
		}
	}
	t.Logf("\n%s", Table(r))
}

// TestFailingGateRollsBackTheBatchAndHalts: each way a gate fails moves
// the batch back to the old revision at once (NACKs, a low success rate) or
// at the timeout (istiod never ready, proxies never ACK); later batches are
// never touched.
func TestFailingGateRollsBackTheBatchAndHalts(t *testing.T) {
	for name, c := range map[string]struct {
		obs    Observation
		at     time.Duration
		reason string
	}{
		"config NACKed":     {Observation{IstiodReady: true, Proxies: 4, Acked: 1, Nacked: 3, ProxiesExpected: 4}, 2 * time.Second, "3 of 4 proxies NACKed the config of istiod-1-31-0"},
		"low success rate":  {Observation{IstiodReady: true, Proxies: 4, Acked: 4, ProxiesExpected: 4, Requests: 500, SuccessRate: 0.9}, 2 * time.Second, "success rate 90.00% over 500 requests, below 99.00%"},
		"istiod crashes":    {Observation{IstiodReady: false}, 2 * time.Minute, "istiod-1-31-0 not ready after 2m0s"},
		"proxies never ACK": {Observation{IstiodReady: true, Proxies: 4, Acked: 0, ProxiesExpected: 4}, 3 * time.Minute, "0 of 4 proxies ACKed istiod-1-31-0 after 2m0s"},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, fleet(), []step{
				{0, Observation{}, MoveTag, 0, "1-31-0", "batch canary"},
				{c.at, c.obs, MoveTag, 0, "1-30-3", c.reason},
				{c.at + time.Second, healthy, Halted, 0, "", "batch canary was rolled back: " + c.reason},
			})
			if r.Status[0].Phase != RolledBack || r.Status[1].Phase != Pending || r.Status[2].Phase != Pending {
				t.Errorf("status %+v", r.Status)
			}
			t.Logf("\n%s", Table(r))
		})
	}
}

// TestGateWaitsForTheMove: a batch whose clusters have not applied the
// tag's move is not judged (its clients still use the old revision): it
// waits, passes once the move is applied and the gate holds, and fails at
// the timeout when a cluster never applies it.
func TestGateWaitsForTheMove(t *testing.T) {
	r := fleet()
	r.Batches = r.Batches[:1]
	notMoved := healthy
	notMoved.NotMoved = []string{"west"}
	run(t, r, []step{
		{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
		{31 * time.Second, notMoved, Wait, 0, "", "default tag not yet moved to 1-31-0 in west"},
		{32 * time.Second, healthy, Done, 0, "", "every batch on 1-31-0"},
	})
	run(t, r, []step{
		{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
		{2 * time.Minute, notMoved, MoveTag, 0, "1-30-3", "default tag not yet moved to 1-31-0 in west after 2m0s"},
	})
}

// TestGateFailsInALaterBatch: passed batches stay on the new revision; only
// the failing one moves back.
func TestGateFailsInALaterBatch(t *testing.T) {
	r := run(t, fleet(), []step{
		{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
		{31 * time.Second, healthy, MoveTag, 1, "1-31-0", "wave-1"},
		{40 * time.Second, Observation{IstiodReady: true, Proxies: 8, Acked: 8, ProxiesExpected: 8, Requests: 2000, SuccessRate: 0.5}, MoveTag, 1, "1-30-3", "below 99.00%"},
	})
	if r.Status[0].Phase != Passed || r.Status[1].Phase != RolledBack || r.Status[2].Phase != Pending {
		t.Errorf("status %+v", r.Status)
	}
}

// TestNoTrafficPassesOnReadinessAndACKs: a rate that cannot be computed
// (NaN, no requests) with MinRequests 0 does not fail the gate.
func TestNoTrafficPassesOnReadinessAndACKs(t *testing.T) {
	r := fleet()
	r.Gate.MinRequests = 0
	r.Batches = r.Batches[:1]
	run(t, r, []step{
		{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
		{31 * time.Second, Observation{IstiodReady: true, Proxies: 1, Acked: 1, ProxiesExpected: 1, SuccessRate: math.NaN()}, Done, 0, "", "every batch"},
	})
}

func TestValidate(t *testing.T) {
	for want, mutate := range map[string]func(*Rollout){
		"two different revisions": func(r *Rollout) { r.To = r.From },
		"no batch":                func(r *Rollout) { r.Batches = nil },
		"in batches canary and wave-1; put it in one": func(r *Rollout) { r.Batches[1].Clusters = append(r.Batches[1].Clusters, "west") },
		"not between 0 and 1":                         func(r *Rollout) { r.Gate.MinSuccessRate = 99 },
		"needs a timeout":                             func(r *Rollout) { r.Gate.Timeout = 0 },
	} {
		r := fleet()
		mutate(&r)
		if _, _, err := Next(r, t0, Observation{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

// TestPrometheusGate: with the success rate required, a batch cannot pass
// without a reading; a failed query or no data waits and fails at the
// timeout with why; a rate below the minimum fails at once; a custom
// query's uncounted rate (Requests -1) passes on its value alone.
func TestPrometheusGate(t *testing.T) {
	prom := func() Rollout {
		r := fleet()
		r.Batches = r.Batches[:1]
		r.Gate.RateRequired = true
		r.Gate.MinRequests = 20
		return r
	}
	ready := Observation{IstiodReady: true}
	noData := ready
	noData.RateProblem = "Prometheus at http://p:9090 returned no requests for sum(x)"
	refused := ready
	refused.RateProblem = "Prometheus at http://p:9090: connection refused"
	low := ready
	low.Requests, low.SuccessRate = 100, 0.5
	good := ready
	good.Requests, good.SuccessRate = 100, 1
	uncountedGood := ready
	uncountedGood.Requests, uncountedGood.SuccessRate = -1, 0.995
	uncountedLow := ready
	uncountedLow.Requests, uncountedLow.SuccessRate = -1, 0.2
	nan := ready
	nan.Requests, nan.SuccessRate = -1, math.NaN()
	for name, steps := range map[string][]step{
		"no data waits past the bake, fails at the timeout": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{time.Minute, noData, Wait, 0, "", "no success rate: Prometheus at http://p:9090 returned no requests"},
			{2 * time.Minute, noData, MoveTag, 0, "1-30-3", "no success rate: Prometheus at http://p:9090 returned no requests for sum(x) after 2m0s"},
		},
		"a failed query fails at the timeout": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{2 * time.Minute, refused, MoveTag, 0, "1-30-3", "connection refused after 2m0s"},
		},
		"a low rate fails at once": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{time.Second, low, MoveTag, 0, "1-30-3", "success rate 50.00% over 100 requests, below 99.00%"},
		},
		"a good rate passes after the bake": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{time.Second, good, Wait, 0, "", "success rate 100.00% over 100 requests"},
			{31 * time.Second, good, Done, 0, "", "every batch"},
		},
		"too few requests wait": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{31 * time.Second, Observation{IstiodReady: true, Requests: 5, SuccessRate: 1}, Wait, 0, "", "only 5 requests, want 20"},
		},
		// A rate over too few requests is no verdict: two failures in
		// three requests wait for more requests rather than roll back.
		"too few failing requests wait, then fail at the timeout": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{time.Second, Observation{IstiodReady: true, Requests: 3, SuccessRate: 1.0 / 3}, Wait, 0, "", "only 3 requests, want 20"},
			{time.Minute, Observation{IstiodReady: true, Requests: 19, SuccessRate: 0.5}, Wait, 0, "", "only 19 requests, want 20"},
			{2 * time.Minute, Observation{IstiodReady: true, Requests: 7, SuccessRate: 0.1}, MoveTag, 0, "1-30-3", "only 7 requests, want 20 after 2m0s"},
		},
		"a low rate fails once the requests suffice": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{time.Second, Observation{IstiodReady: true, Requests: 10, SuccessRate: 0.5}, Wait, 0, "", "only 10 requests, want 20"},
			{2 * time.Second, Observation{IstiodReady: true, Requests: 20, SuccessRate: 0.5}, MoveTag, 0, "1-30-3", "success rate 50.00% over 20 requests, below 99.00%"},
		},
		"a custom query's rate passes": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{31 * time.Second, uncountedGood, Done, 0, "", "every batch"},
		},
		"a custom query's low rate fails": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{time.Second, uncountedLow, MoveTag, 0, "1-30-3", "success rate 20.00% (requests not counted), below 99.00%"},
		},
		"a NaN rate never passes": {
			{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
			{31 * time.Second, nan, Wait, 0, "", "no success rate: no requests"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := prom()
			if name == "a custom query's rate passes" || name == "a custom query's low rate fails" || name == "a NaN rate never passes" {
				r.Gate.MinRequests = 0
			}
			run(t, r, steps)
		})
	}
}

func TestRateQueries(t *testing.T) {
	if got, want := DefaultRateSelector([]string{"west", "east.1"}), `reporter="source",source_cluster=~"west|east\\.1"`; got != want {
		t.Errorf("selector %s, want %s", got, want)
	}
	q, err := ExpandRateQuery(`sum(rate(ok{cluster=~"{{ clusters }}"}[{{ window }}])) / sum(rate(all{cluster=~"{{clusters}}"}[{{window}}]))`, []string{"a", "b"}, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := `sum(rate(ok{cluster=~"a|b"}[1m30s])) / sum(rate(all{cluster=~"a|b"}[1m30s]))`; q != want {
		t.Errorf("query %s, want %s", q, want)
	}
	for _, bad := range []string{`x{c=~"{{ cluster }}"}`, `x{{`} {
		if err := CheckRateQuery(bad); err == nil || !strings.Contains(err.Error(), "placeholders are {{ clusters }} and {{ window }}") {
			t.Errorf("%s: error %v", bad, err)
		}
	}
	for since, want := range map[time.Duration]time.Duration{0: time.Second, 1500 * time.Millisecond: time.Second, 42 * time.Second: 42 * time.Second, time.Hour: MaxRateWindow} {
		if got := RateWindow(since); got != want {
			t.Errorf("RateWindow(%v) = %v, want %v", since, got, want)
		}
	}
}
