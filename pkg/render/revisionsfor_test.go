package render

import (
	"fmt"
	"testing"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// TestRevisionsForPlacesTheTagPerCluster: during a fleet rollout the default
// tag is on the new revision only in clusters whose batch moved and was not
// moved back; once Done, status.revisions decides everywhere.
func TestRevisionsForPlacesTheTagPerCluster(t *testing.T) {
	ist := &v1beta1.Istio{}
	ist.Spec.Version = "1.30.3"
	ist.Status.Revisions = []v1beta1.RevisionStatus{{Name: "1-29-6", Version: "1.29.6", Default: true}, {Name: "1-30-3", Version: "1.30.3"}}
	ist.Status.Rollout = &v1beta1.RolloutStatus{From: "1-29-6", To: "1-30-3", Phase: "Progressing", Batches: []v1beta1.RolloutBatchStatus{
		{Name: "canary", Clusters: []string{"west"}, Phase: "Passed"},
		{Name: "wave-1", Clusters: []string{"east"}, Phase: "Gating"},
		{Name: "wave-2", Clusters: []string{"north"}, Phase: "Pending"},
	}}
	tagged := func(cluster string) string {
		for _, rv := range RevisionsFor(ist, cluster) {
			for _, tg := range rv.Tags {
				if tg == DefaultTag {
					return rv.Name
				}
			}
		}
		return ""
	}
	for cluster, want := range map[string]string{"west": "1-30-3", "east": "1-30-3", "north": "1-29-6", "primary": "1-29-6"} {
		if got := tagged(cluster); got != want {
			t.Errorf("%s: default tag on %s, want %s", cluster, got, want)
		}
	}
	ist.Status.Rollout.Batches[1].Phase = "RolledBack"
	ist.Status.Rollout.Phase = "Halted"
	if got := tagged("east"); got != "1-29-6" {
		t.Errorf("rolled-back batch: default tag on %s, want 1-29-6", got)
	}
	ist.Status.Rollout.Phase = "Done"
	if got := fmt.Sprintf("%s %s", tagged("west"), tagged("north")); got != "1-29-6 1-29-6" {
		t.Errorf("done rollout (status.revisions decides): %s", got)
	}
}
