package tagrollout

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

var members = []Member{
	{ID: "primary", Labels: map[string]string{"wave": "last"}},
	{ID: "west", Labels: map[string]string{"wave": "canary", "region": "eu"}},
	{ID: "east", Labels: map[string]string{"wave": "1", "region": "us"}},
	{ID: "north", Labels: map[string]string{"wave": "1", "region": "eu"}},
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func TestResolveBatches(t *testing.T) {
	got, err := ResolveBatches([]v1beta1.RolloutBatch{
		{Name: "canary", ClusterSelector: sel("wave", "canary")},
		{Name: "wave-1", Clusters: []string{"south"}, ClusterSelector: sel("wave", "1")},
		{Name: "rest", ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "wave", Operator: metav1.LabelSelectorOpIn, Values: []string{"last"}}}}},
		{Name: "none", ClusterSelector: sel("wave", "9")},
	}, members)
	if err != nil {
		t.Fatal(err)
	}
	want := []Batch{{Name: "canary", Clusters: []string{"west"}}, {Name: "wave-1", Clusters: []string{"east", "north", "south"}},
		{Name: "rest", Clusters: []string{"primary"}}, {Name: "none", Clusters: []string{}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("batches %+v, want %+v", got, want)
	}
}

// TestResolveBatchesRefusesAClusterInTwoBatches: the error names the
// cluster, both batches and how each chose it.
func TestResolveBatchesRefusesAClusterInTwoBatches(t *testing.T) {
	for want, specs := range map[string][]v1beta1.RolloutBatch{
		"cluster north is in batch eu (chosen by clusterSelector region=eu) and in batch wave-1 (chosen by clusterSelector wave=1)": {
			{Name: "eu", ClusterSelector: sel("region", "eu")}, {Name: "wave-1", ClusterSelector: sel("wave", "1")}},
		"cluster west is in batch canary (listed in clusters) and in batch eu (chosen by clusterSelector region=eu)": {
			{Name: "canary", Clusters: []string{"west"}}, {Name: "eu", ClusterSelector: sel("region", "eu")}},
		"cluster east is in batch a (listed in clusters) and in batch b (listed in clusters)": {
			{Name: "a", Clusters: []string{"east"}}, {Name: "b", Clusters: []string{"east"}}},
		"batches[0] (bad).clusterSelector": {
			{Name: "bad", ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "wave", Operator: "Near"}}}}},
	} {
		if _, err := ResolveBatches(specs, members); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

// TestEmptyBatchHalts: a batch that chooses no cluster halts the rollout
// when its turn comes, with why; earlier batches keep their verdict.
func TestEmptyBatchHalts(t *testing.T) {
	r := fleet()
	r.Batches[1].Clusters = nil
	r = run(t, r, []step{
		{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
		{31 * time.Second, healthy, Halted, 1, "", "batch wave-1 has no cluster"},
		{32 * time.Second, healthy, Halted, 1, "", "batch wave-1 was rolled back: batch wave-1 has no cluster"},
	})
	if r.Status[0].Phase != Passed || r.Status[1].Phase != RolledBack || r.Status[2].Phase != Pending {
		t.Errorf("status %+v", r.Status)
	}
}
