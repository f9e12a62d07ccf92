package main

import (
	"testing"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

func TestRevisionLines(t *testing.T) {
	got := revisionLines([]v1beta1.RevisionStatus{
		{Name: "1-30-3", Version: "1.30.3", Pods: 3, Clusters: []v1beta1.ClusterPods{{Cluster: "primary", Pods: 2}, {Cluster: "remote1", Pods: 1}},
			Message: "revision 1-30-3 still injects 3 pod(s); restart them onto the new revision"},
		{Name: "1-31-0", Version: "1.31.0", Default: true, Tags: []string{"stable"}},
	})
	want := []string{
		"1-30-3 (1.30.3): 3 pods [primary=2, remote1=1]; revision 1-30-3 still injects 3 pod(s); restart them onto the new revision",
		"1-31-0 (1.31.0, tags default,stable): 0 pods",
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("revisionLines =\n%q\nwant\n%q", got, want)
	}
}
