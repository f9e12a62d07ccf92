package tagrollout

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// BatchStatusOf is the planner's view of what status.rollout kept of a batch.
func BatchStatusOf(k v1beta1.RolloutBatchStatus) BatchStatus {
	s := BatchStatus{Phase: Phase(k.Phase), Reason: k.Reason}
	if k.MovedAt != nil {
		s.MovedAt = k.MovedAt.Time
	}
	if k.DecidedAt != nil {
		s.DecidedAt = k.DecidedAt.Time
	}
	return s
}

// StatusTable prints status.rollout as the rollout table, after a line with
// the versions and the rollout's phase.
func StatusTable(st *v1beta1.RolloutStatus) string {
	if st == nil {
		return ""
	}
	r := Rollout{From: st.From, To: st.To}
	for _, b := range st.Batches {
		r.Batches = append(r.Batches, Batch{Name: b.Name, Clusters: b.Clusters})
		r.Status = append(r.Status, BatchStatusOf(b))
	}
	return fmt.Sprintf("%s -> %s: %s\n%s", st.From, st.To, st.Phase, Table(r))
}

// Table prints the rollout table: batch, clusters, gate result, when the
// tag moved and how long the gate took.
func Table(r Rollout) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "BATCH\tCLUSTERS\tGATE\tMOVED\tDECIDED AFTER\tREASON")
	for i, bt := range r.Batches {
		st := BatchStatus{Phase: Pending}
		if i < len(r.Status) && r.Status[i].Phase != "" {
			st = r.Status[i]
		}
		moved, took := "-", "-"
		if !st.MovedAt.IsZero() {
			moved = st.MovedAt.UTC().Format(time.TimeOnly)
		}
		if !st.DecidedAt.IsZero() {
			took = st.DecidedAt.Sub(st.MovedAt).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", bt.Name, strings.Join(bt.Clusters, ","), st.Phase, moved, took, st.Reason)
	}
	w.Flush()
	return b.String()
}
