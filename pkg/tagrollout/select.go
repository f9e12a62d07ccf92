package tagrollout

import (
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// Member is a cluster of the mesh that a batch's clusterSelector may
// choose: its cluster ID and its labels (a RemoteIstio's labels; the
// primary's are its Istio resource's).
type Member struct {
	ID     string
	Labels map[string]string
}

// ResolveBatches turns spec.updateStrategy.rollout.batches into batches of
// cluster IDs: each batch's listed clusters and the members its
// clusterSelector matches, sorted. A cluster that two batches choose is an
// error naming the cluster, both batches and how each chose it; so is a
// selector that does not parse. A batch may come out empty (its selector
// matches nothing yet); Validate refuses that when the rollout runs.
func ResolveBatches(specs []v1beta1.RolloutBatch, members []Member) ([]Batch, error) {
	out := make([]Batch, 0, len(specs))
	type pick struct{ batch, how string }
	seen := map[string]pick{}
	for i, s := range specs {
		chosen := map[string]string{}
		for _, c := range s.Clusters {
			chosen[c] = "listed in clusters"
		}
		if s.ClusterSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(s.ClusterSelector)
			if err != nil {
				return nil, fmt.Errorf("batches[%d] (%s).clusterSelector: %w", i, s.Name, err)
			}
			for _, m := range members {
				if sel.Matches(labels.Set(m.Labels)) {
					if _, listed := chosen[m.ID]; !listed {
						chosen[m.ID] = fmt.Sprintf("chosen by clusterSelector %s", sel)
					}
				}
			}
		}
		b := Batch{Name: s.Name, Clusters: make([]string, 0, len(chosen))}
		for c := range chosen {
			b.Clusters = append(b.Clusters, c)
		}
		sort.Strings(b.Clusters)
		for _, c := range b.Clusters {
			how := chosen[c]
			if p, dup := seen[c]; dup {
				return nil, fmt.Errorf("cluster %s is in batch %s (%s) and in batch %s (%s); a cluster moves in one batch: change the labels, selectors or lists so that only one batch chooses it",
					c, p.batch, p.how, s.Name, how)
			}
		}
		for c, how := range chosen {
			seen[c] = pick{s.Name, how}
		}
		out = append(out, b)
	}
	return out, nil
}

// describeEmpty says why a batch has no cluster, for Validate's error.
func describeEmpty(name string) string {
	return fmt.Sprintf("batch %s has no cluster (no cluster listed, and its clusterSelector, if any, matches no RemoteIstio nor the primary's Istio resource); fix its labels or selector", name)
}
