// Package tagrollout decides, step by step, how the default revision tag
// moves from one istiod revision to another across a fleet of clusters:
// batch by batch, each batch gated on its istiod revision being ready, its
// proxies having ACKed the revision's config and a success rate, and moved
// back when its gate fails. It is pure: the caller observes the clusters
// (Observation), calls Next with the state it keeps, carries out the Action
// and stores the returned state. Nothing here reads a cluster or a clock.
package tagrollout

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Phase is where one batch stands.
type Phase string

// Batch phases.
const (
	// Pending: the tag has not moved in the batch's clusters.
	Pending Phase = "Pending"
	// Gating: the tag moved; the gate is being evaluated.
	Gating Phase = "Gating"
	// Passed: the gate held; the batch stays on the new revision.
	Passed Phase = "Passed"
	// RolledBack: the gate failed; the tag was moved back.
	RolledBack Phase = "RolledBack"
)

// Batch is a set of clusters whose tag moves together.
type Batch struct {
	Name     string   `json:"name"`
	Clusters []string `json:"clusters"`
}

// BatchStatus is what the caller keeps for a batch between calls.
type BatchStatus struct {
	Phase Phase `json:"phase"`
	// MovedAt is when the tag moved to the new revision in the batch.
	MovedAt time.Time `json:"movedAt,omitempty"`
	// DecidedAt is when the gate passed or failed.
	DecidedAt time.Time `json:"decidedAt,omitempty"`
	// Reason says why the gate passed or failed, or what it waits for.
	Reason string `json:"reason,omitempty"`
}

// Gate is the policy a batch must meet after its tag moved.
type Gate struct {
	// MinSuccessRate is the lowest acceptable success rate (0..1) of the
	// batch's traffic (a Prometheus query's result).
	MinSuccessRate float64 `json:"minSuccessRate"`
	// MinRequests is how many requests the rate must rest on before it can
	// pass or fail the batch (a rate over three requests proves nothing):
	// with fewer the batch waits, and fails at the timeout.
	MinRequests int `json:"minRequests"`
	// Bake is how long the batch must meet the gate before it passes.
	Bake time.Duration `json:"bake"`
	// Timeout is how long the batch may take to meet the gate (istiod
	// ready, every proxy ACKed) before it fails.
	Timeout time.Duration `json:"timeout"`
	// RateRequired: the success rate is part of the gate (a Prometheus
	// query): a batch cannot pass without a reading, and one that has
	// none by the timeout fails with why (Observation.RateProblem).
	RateRequired bool `json:"rateRequired,omitempty"`
}

// Observation is what the caller saw of a gating batch just now.
type Observation struct {
	// IstiodReady: the new revision's istiod serves (Deployment rolled
	// out, readiness passing).
	IstiodReady bool
	// Proxies connected to the new revision from the batch's clusters, how
	// many ACKed its current config and how many NACKed it.
	Proxies, Acked, Nacked int
	// Nack says which proxy NACKed what and why (Acks.Nack).
	Nack string
	// AckProblem says why the proxies' ACKs could not be read (istiod's
	// sync state did not answer); the batch waits, and fails at the
	// timeout with this reason.
	AckProblem string
	// Requests counted by the success-rate query over the window (-1 when
	// the query gives a rate but no count), and the success rate (NaN when
	// there was no traffic).
	Requests    int
	SuccessRate float64
	// RateProblem says why the success rate could not be read (the query
	// failed or returned no data); with Gate.RateRequired the batch waits,
	// and fails at the timeout with this reason.
	RateProblem string
	// NotMoved lists the batch's clusters that have not yet applied the
	// tag's move (their default tag still calls the old revision): the
	// gate judges nothing there yet, so the batch waits, and fails at the
	// timeout.
	NotMoved []string
	// ProxiesExpected is how many proxies of the batch must reach the new
	// revision (workloads restarted onto the tag); 0 waits for none.
	ProxiesExpected int
}

// Kind is what the caller must do next.
type Kind string

// Action kinds.
const (
	// MoveTag: point the default tag of Clusters at Revision.
	MoveTag Kind = "MoveTag"
	// Wait: look again after After (nothing to change now).
	Wait Kind = "Wait"
	// Done: every batch passed.
	Done Kind = "Done"
	// Halted: a batch was rolled back; no further batch moves.
	Halted Kind = "Halted"
)

// Action is Next's decision.
type Action struct {
	Kind     Kind
	Batch    int
	Clusters []string
	Revision string
	After    time.Duration
	Reason   string
}

// Rollout is the whole decision's input: the revisions, the batches in
// order, the gate and what the caller keeps (Status, one per batch).
type Rollout struct {
	From, To string
	Batches  []Batch
	Gate     Gate
	Status   []BatchStatus
}

// Validate reports a rollout that cannot be planned.
func (r *Rollout) Validate() error {
	if r.From == "" || r.To == "" || r.From == r.To {
		return fmt.Errorf("the rollout needs two different revisions (from %q, to %q)", r.From, r.To)
	}
	if len(r.Batches) == 0 {
		return fmt.Errorf("the rollout has no batch")
	}
	seen := map[string]string{}
	for _, b := range r.Batches {
		for _, c := range b.Clusters {
			if o, ok := seen[c]; ok {
				return fmt.Errorf("cluster %s is in batches %s and %s; put it in one", c, o, b.Name)
			}
			seen[c] = b.Name
		}
	}
	if r.Gate.MinSuccessRate < 0 || r.Gate.MinSuccessRate > 1 {
		return fmt.Errorf("the gate's minimum success rate %v is not between 0 and 1", r.Gate.MinSuccessRate)
	}
	if r.Gate.Timeout <= 0 {
		return fmt.Errorf("the gate needs a timeout")
	}
	return nil
}

// Next decides the next action from the rollout and, when a batch is
// gating, what was observed of it (obs is ignored otherwise). It returns the
// action and the batches' new status; the caller stores the status once the
// action is carried out. Batches go strictly in order; the first failed
// gate moves that batch back and halts the rollout, leaving passed batches
// on the new revision and later ones on the old.
func Next(r Rollout, now time.Time, obs Observation) (Action, []BatchStatus, error) {
	if err := r.Validate(); err != nil {
		return Action{}, nil, err
	}
	st := make([]BatchStatus, len(r.Batches))
	copy(st, r.Status)
	for i := range st {
		if st[i].Phase == "" {
			st[i].Phase = Pending
		}
	}
	for i, b := range r.Batches {
		switch st[i].Phase {
		case Passed:
			continue
		case RolledBack:
			return Action{Kind: Halted, Batch: i, Reason: fmt.Sprintf("batch %s was rolled back: %s", b.Name, st[i].Reason)}, st, nil
		case Pending:
			if len(b.Clusters) == 0 {
				st[i] = BatchStatus{Phase: RolledBack, DecidedAt: now, Reason: describeEmpty(b.Name)}
				return Action{Kind: Halted, Batch: i, Reason: st[i].Reason}, st, nil
			}
			st[i] = BatchStatus{Phase: Gating, MovedAt: now, Reason: "tag moved; gate pending"}
			return Action{Kind: MoveTag, Batch: i, Clusters: b.Clusters, Revision: r.To,
				Reason: fmt.Sprintf("batch %s: move the default tag to %s", b.Name, r.To)}, st, nil
		case Gating:
			pass, fail, why := evaluate(r.Gate, now.Sub(st[i].MovedAt), obs, r.To)
			switch {
			case fail:
				st[i] = BatchStatus{Phase: RolledBack, MovedAt: st[i].MovedAt, DecidedAt: now, Reason: why}
				return Action{Kind: MoveTag, Batch: i, Clusters: b.Clusters, Revision: r.From,
					Reason: fmt.Sprintf("batch %s: gate failed (%s); move the default tag back to %s", b.Name, why, r.From)}, st, nil
			case pass:
				st[i] = BatchStatus{Phase: Passed, MovedAt: st[i].MovedAt, DecidedAt: now, Reason: why}
				continue
			default:
				st[i].Reason = why
				return Action{Kind: Wait, Batch: i, After: recheck(r.Gate), Reason: fmt.Sprintf("batch %s: %s", b.Name, why)}, st, nil
			}
		default:
			return Action{}, nil, fmt.Errorf("batch %s has unknown phase %q", b.Name, st[i].Phase)
		}
	}
	return Action{Kind: Done, Reason: fmt.Sprintf("every batch on %s", r.To)}, st, nil
}

// evaluate judges a gating batch: it fails at once on NACKs or a success
// rate below the minimum over at least MinRequests requests, fails when
// istiod, the proxies or the requests are not there by the timeout, and
// passes once everything holds for the bake time.
func evaluate(g Gate, since time.Duration, o Observation, rev string) (pass, fail bool, why string) {
	if o.Nacked > 0 {
		why := fmt.Sprintf("%d of %d proxies NACKed the config of istiod-%s", o.Nacked, o.Proxies, rev)
		if o.Nack != "" {
			why += ": " + o.Nack
		}
		return false, true, why
	}
	rateKnown := o.Requests != 0 && !math.IsNaN(o.SuccessRate) && o.RateProblem == ""
	// A rate over fewer requests than the minimum proves nothing either
	// way: it neither passes nor fails the batch (a rate from a custom
	// query, Requests -1, is not counted and judged on its value).
	enough := o.Requests < 0 || o.Requests >= g.MinRequests
	if rateKnown && enough && o.SuccessRate < g.MinSuccessRate {
		return false, true, fmt.Sprintf("success rate %.2f%% %s, below %.2f%%", 100*o.SuccessRate, over(o.Requests), 100*g.MinSuccessRate)
	}
	waiting := ""
	switch {
	case len(o.NotMoved) > 0:
		waiting = fmt.Sprintf("default tag not yet moved to %s in %s", rev, strings.Join(o.NotMoved, ", "))
	case !o.IstiodReady:
		waiting = fmt.Sprintf("istiod-%s not ready", rev)
	case o.AckProblem != "":
		waiting = "no xDS ACKs: " + o.AckProblem
	case o.Acked < o.ProxiesExpected:
		waiting = fmt.Sprintf("%d of %d proxies ACKed istiod-%s", o.Acked, o.ProxiesExpected, rev)
	case g.RateRequired && o.RateProblem != "":
		waiting = "no success rate: " + o.RateProblem
	case !enough:
		waiting = fmt.Sprintf("only %d requests, want %d", o.Requests, g.MinRequests)
	case g.RateRequired && !rateKnown:
		waiting = "no success rate: no requests"
	}
	if waiting != "" {
		if since >= g.Timeout {
			return false, true, fmt.Sprintf("%s after %v", waiting, g.Timeout)
		}
		return false, false, waiting
	}
	rate := "no traffic"
	if rateKnown {
		rate = fmt.Sprintf("success rate %.2f%% %s", 100*o.SuccessRate, over(o.Requests))
	}
	if since < g.Bake {
		return false, false, fmt.Sprintf("healthy (%s, %d proxies ACKed); baking, %v left", rate, o.Acked, (g.Bake - since).Round(time.Second))
	}
	return true, false, fmt.Sprintf("istiod-%s ready, %d proxies ACKed, %s", rev, o.Acked, rate)
}

// over says what a rate rests on: "over N requests", or "(uncounted)" for
// a query that gives a rate alone.
func over(requests int) string {
	if requests < 0 {
		return "(requests not counted)"
	}
	return fmt.Sprintf("over %d requests", requests)
}

// Gating returns the batch whose gate is being evaluated (the first one
// not passed, when it is gating), or -1.
func (r *Rollout) Gating() int {
	for i := range r.Batches {
		if i >= len(r.Status) {
			return -1
		}
		switch r.Status[i].Phase {
		case Passed:
			continue
		case Gating:
			return i
		}
		return -1
	}
	return -1
}

// recheck is how often a gating batch is looked at again.
func recheck(g Gate) time.Duration {
	d := g.Bake / 5
	if d <= 0 || d > 5*time.Second {
		d = 5 * time.Second
	}
	if d < 200*time.Millisecond {
		d = 200 * time.Millisecond
	}
	return d
}
