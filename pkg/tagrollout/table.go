package tagrollout

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

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
