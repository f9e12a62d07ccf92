package remoteistio

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// fleetIstio is an Istio resource mid-rollout: spec.version 1.31.0, three
// revisions installed, the default tag on 1-29-6 in status.revisions, and
// a rollout to `to` whose canary (remote1) gates.
func fleetIstio(to, phase string) *v1beta1.Istio {
	ist := &v1beta1.Istio{}
	ist.Spec.Version = "1.31.0"
	ist.Status.Revisions = []v1beta1.RevisionStatus{
		{Name: "1-29-6", Version: "1.29.6", Default: true},
		{Name: "1-30-3", Version: "1.30.3"},
		{Name: "1-31-0", Version: "1.31.0"},
	}
	ist.Status.Rollout = &v1beta1.RolloutStatus{From: "1-29-6", To: to, Phase: phase, Batches: []v1beta1.RolloutBatchStatus{
		{Name: "canary", Clusters: []string{"remote1"}, Phase: "Gating"},
		{Name: "wave-1", Clusters: []string{"remote2"}, Phase: "Pending"},
	}}
	return ist
}

// TestRevisionsChangedFollowsWhatRemotesRender: every status change that
// changes a remote's render passes the RemoteIstio controller's predicate,
// and one that changes none is filtered. A rollout restarted towards
// another revision with its batches in the same phases (spec.version set
// forward again mid-rollout) changes where remote1's default tag goes and
// nothing the former key (status.revisions' tags, the batches' phases)
// looked at: remote1 was left on the former target until its next resync.
func TestRevisionsChangedFollowsWhatRemotesRender(t *testing.T) {
	p := revisionsChanged()
	done := func() *v1beta1.Istio {
		ist := fleetIstio("1-31-0", "Done")
		for i := range ist.Status.Revisions {
			ist.Status.Revisions[i].Default = ist.Status.Revisions[i].Name == "1-31-0"
		}
		return ist
	}
	allPassed := func() *v1beta1.Istio {
		ist := fleetIstio("1-31-0", "Progressing")
		ist.Status.Rollout.Batches[0].Phase, ist.Status.Rollout.Batches[1].Phase = "Passed", "Passed"
		return ist
	}
	reasonOnly := fleetIstio("1-31-0", "Progressing")
	reasonOnly.Status.Rollout.Batches[0].Reason = "healthy; baking, 2s left"
	for name, c := range map[string]struct {
		old, new *v1beta1.Istio
		want     bool
	}{
		"the rollout's target changes, batches in the same phases": {fleetIstio("1-30-3", "Progressing"), fleetIstio("1-31-0", "Progressing"), true},
		"the last batch passes and the rollout is done":            {allPassed(), done(), true},
		"the gate's reason changes":                                {fleetIstio("1-31-0", "Progressing"), reasonOnly, false},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: c.old, ObjectNew: c.new}); got != c.want {
			t.Errorf("%s: predicate %v, want %v (remote1 renders %v, then %v)", name, got, c.want,
				render.RevisionsFor(c.old, "remote1"), render.RevisionsFor(c.new, "remote1"))
		}
	}
}
