package istio

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
)

// Rollout phases in status.rollout.phase.
const (
	rolloutProgressing = "Progressing"
	rolloutDone        = "Done"
	rolloutHalted      = "Halted"
)

// planOf turns spec.updateStrategy.rollout and what status.rollout kept into
// the planner's input. A batch's clusters are its listed ones and the
// members its clusterSelector matches, chosen again while it is pending and
// kept (status.rollout) from the moment its tag moved, so a label changed
// mid-rollout never moves a cluster the gate did not judge. The gate
// observes istiod readiness and, with gate.xds, the batch's proxies' ACKs
// and NACKs in the new istiod's sync state, with gate.prometheus the
// batch's success rate.
func planOf(ro *v1beta1.FleetRollout, from, to string, st *v1beta1.RolloutStatus, members []tagrollout.Member) (tagrollout.Rollout, error) {
	gate, err := gateOf(ro.Gate)
	if err != nil {
		return tagrollout.Rollout{}, err
	}
	batches, err := tagrollout.ResolveBatches(ro.Batches, members)
	if err != nil {
		return tagrollout.Rollout{}, err
	}
	p := tagrollout.Rollout{From: from, To: to, Gate: gate, Batches: batches}
	for i, b := range ro.Batches {
		bs := tagrollout.BatchStatus{Phase: tagrollout.Pending}
		if st != nil && i < len(st.Batches) && st.Batches[i].Name == b.Name {
			bs = tagrollout.BatchStatusOf(st.Batches[i])
			if bs.Phase != tagrollout.Pending {
				p.Batches[i].Clusters = st.Batches[i].Clusters
			}
		}
		p.Status = append(p.Status, bs)
	}
	return p, nil
}

// rolloutMembers are the clusters a batch's clusterSelector chooses from:
// each RemoteIstio of this control plane (its cluster ID, its labels) and
// the primary, whose labels are the Istio resource's own.
func (r *Reconciler) rolloutMembers(ctx context.Context, ist *v1beta1.Istio, primary string) ([]tagrollout.Member, error) {
	members := []tagrollout.Member{{ID: primary, Labels: ist.Labels}}
	remotes, err := r.remotesOf(ctx, ist, "for the rollout's clusterSelector")
	if err != nil {
		return nil, err
	}
	for id, ri := range remotes {
		members = append(members, tagrollout.Member{ID: id, Labels: ri.Labels})
	}
	slices.SortFunc(members[1:], func(a, b tagrollout.Member) int { return strings.Compare(a.ID, b.ID) })
	return members, nil
}

// remotesOf returns the RemoteIstios of ist's control plane that are not
// being deleted, by cluster ID; what says what they are listed for.
func (r *Reconciler) remotesOf(ctx context.Context, ist *v1beta1.Istio, what string) (map[string]*v1beta1.RemoteIstio, error) {
	var list v1beta1.RemoteIstioList
	if err := r.Client.List(ctx, &list, client.InNamespace(ist.Namespace)); err != nil {
		return nil, fmt.Errorf("list RemoteIstio resources in %s %s: %w", ist.Namespace, what, err)
	}
	out := map[string]*v1beta1.RemoteIstio{}
	for i := range list.Items {
		ri := &list.Items[i]
		if ri.Spec.IstioRef != "" && ri.Spec.IstioRef != ist.Name || !ri.DeletionTimestamp.IsZero() {
			continue
		}
		id := ri.Spec.ClusterName
		if id == "" {
			id = ri.Name
		}
		out[id] = ri
	}
	return out, nil
}

// tagNotMoved lists the remote clusters among clusters whose RemoteIstio
// does not yet report the default tag on rev (status.defaultTagRevision,
// written once the remote applied it). The primary's move is applied by
// this reconciler itself before the status that gates it is written.
func (r *Reconciler) tagNotMoved(ctx context.Context, ist *v1beta1.Istio, primary string, clusters []string, rev string) ([]string, error) {
	remotes, err := r.remotesOf(ctx, ist, "to see the rollout's tag move applied")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range clusters {
		if ri := remotes[c]; c != primary && (ri == nil || ri.Status.DefaultTagRevision != rev) {
			out = append(out, c)
		}
	}
	return out, nil
}

// primaryID is the primary's cluster ID before the ControlPlane is built.
func primaryID(ist *v1beta1.Istio) string {
	if ist.Spec.ClusterName != "" {
		return ist.Spec.ClusterName
	}
	return ist.Name
}

// rolloutProblem says why spec.updateStrategy.rollout cannot be planned,
// "" when it can: a gate that does not parse, a selector that does not, a
// cluster two batches choose. A batch whose selector matches nothing yet
// is not refused here (remotes may join later): the rollout refuses it
// when it runs.
func (r *Reconciler) rolloutProblem(ctx context.Context, ist *v1beta1.Istio, ro *v1beta1.FleetRollout) string {
	members, err := r.rolloutMembers(ctx, ist, primaryID(ist))
	if err == nil {
		_, err = planOf(ro, "from", "to", nil, members)
	}
	if err != nil {
		return fmt.Sprintf("spec.updateStrategy.rollout: %v", err)
	}
	return ""
}

// rolloutStatusOf is what status.rollout keeps of the planner's state.
func rolloutStatusOf(p tagrollout.Rollout, phase string) *v1beta1.RolloutStatus {
	out := &v1beta1.RolloutStatus{From: p.From, To: p.To, Phase: phase}
	for i, b := range p.Batches {
		s := p.Status[i]
		bs := v1beta1.RolloutBatchStatus{Name: b.Name, Clusters: b.Clusters, Phase: string(s.Phase), Reason: s.Reason}
		if !s.MovedAt.IsZero() {
			bs.MovedAt = &metav1.Time{Time: s.MovedAt}
		}
		if !s.DecidedAt.IsZero() {
			bs.DecidedAt = &metav1.Time{Time: s.DecidedAt}
		}
		out.Batches = append(out.Batches, bs)
	}
	return out
}

// driveRollout takes one step of the fleet rollout from the revision the
// default tag is on (current) to spec.version's (want), and returns where
// the default tag is for clusters in no moved batch (current until every
// batch passed, then want) and how soon to look again. Batches and their
// gate's verdicts are kept in status.rollout, which render.RevisionsFor
// reads to place the tag per cluster; each move is an event.
func (r *Reconciler) driveRollout(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane, ro *v1beta1.FleetRollout, current, want string, now time.Time) (string, time.Duration, error) {
	st := ist.Status.Rollout
	if current == want {
		// Nothing to roll out: a finished rollout's record stays; a halted
		// one ends when spec.version goes back to where the tag is.
		if st != nil && st.Phase == rolloutHalted && st.From == want {
			st.Phase = rolloutDone
		}
		return current, 0, nil
	}
	if st == nil || st.Phase == rolloutDone || st.From != current || st.To != want {
		st = nil
		r.Events.Eventf(ist, nil, corev1.EventTypeNormal, "RolloutStarted", "Rollout",
			"fleet rollout of the default tag from %s to %s in %d batches", current, want, len(ro.Batches))
	}
	members, err := r.rolloutMembers(ctx, ist, cp.ClusterName)
	if err != nil {
		return current, 0, err
	}
	plan, err := planOf(ro, current, want, st, members)
	if err != nil {
		return current, 0, err
	}
	obs := tagrollout.Observation{}
	if i := plan.Gating(); i >= 0 {
		if obs.NotMoved, err = r.tagNotMoved(ctx, ist, cp.ClusterName, plan.Batches[i].Clusters, want); err != nil {
			return current, 0, err
		}
	}
	if i := plan.Gating(); i >= 0 && ro.Gate.Prometheus != nil {
		obs = observeRate(ctx, ro.Gate.Prometheus, plan.Gate.MinSuccessRate, plan.Gate.MinRequests,
			plan.Batches[i].Clusters, now.Sub(plan.Status[i].MovedAt), now)
	}
	if i := plan.Gating(); i >= 0 && ro.Gate.XDS != nil {
		acks, problem := r.IstiodDebug.Acks(ctx, r.APIReader, cp.Namespace, want, plan.Batches[i].Clusters)
		obs.Proxies, obs.Acked, obs.Nacked, obs.Nack, obs.AckProblem = acks.Proxies, acks.Acked, acks.Nacked, acks.Nack, problem
		obs.ProxiesExpected = max(minProxies(ro.Gate.XDS), acks.Proxies)
	}
	if obs.IstiodReady, err = r.istiodReady(ctx, cp.Namespace, want); err != nil {
		return current, 0, err
	}
	act, next, err := tagrollout.Next(plan, now, obs)
	if err != nil {
		return current, 0, err
	}
	plan.Status = next
	target, requeue, phase := current, time.Duration(0), rolloutProgressing
	switch act.Kind {
	case tagrollout.MoveTag:
		typ, reason := corev1.EventTypeNormal, "RolloutBatchMoved"
		if act.Revision == plan.From {
			typ, reason, phase = corev1.EventTypeWarning, "RolloutBatchRolledBack", rolloutHalted
		} else {
			requeue = time.Second
		}
		r.Events.Eventf(ist, nil, typ, reason, "Rollout", "%s", act.Reason)
	case tagrollout.Wait:
		requeue = act.After
	case tagrollout.Done:
		target, phase = want, rolloutDone
		if st == nil || st.Phase != rolloutDone {
			r.Events.Eventf(ist, nil, corev1.EventTypeNormal, "RolloutDone", "Rollout", "%s", act.Reason)
		}
	case tagrollout.Halted:
		phase = rolloutHalted
		if st == nil || st.Phase != rolloutHalted {
			r.Events.Eventf(ist, nil, corev1.EventTypeWarning, "RolloutHalted", "Rollout", "%s", act.Reason)
		}
	}
	ist.Status.Rollout = rolloutStatusOf(plan, phase)
	return target, requeue, nil
}

// rolloutKeeps reports whether the fleet rollout still places the default
// tag on rev in some cluster (so it must not be pruned).
func rolloutKeeps(ist *v1beta1.Istio, rev string) bool {
	st := ist.Status.Rollout
	return st != nil && st.Phase != rolloutDone && (st.From == rev || st.To == rev)
}
