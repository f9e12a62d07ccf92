// Package conditions records the outcome of a controller's install steps as
// status conditions, one per step, and sums them up in a phase. The Istio and
// RemoteIstio controllers share it.
package conditions

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// Terminal reasons need the user to act; controllers do not retry them on a
// short timer but wait for the spec (or the object in the way) to change.
// Unauthorized is also looked at again on a slow timer, since its fix lies
// in the remote cluster, which no watch sees.
var Terminal = map[string]bool{
	v1beta1.ReasonInvalidSpec:             true,
	v1beta1.ReasonUnsupportedVersion:      true,
	v1beta1.ReasonUnsupportedIstioVersion: true,
	v1beta1.ReasonNamespaceTerminating:    true,
	v1beta1.ReasonConflict:                true,
	v1beta1.ReasonNotOwned:                true,
	v1beta1.ReasonCAError:                 true,
	v1beta1.ReasonDeploymentFailed:        true,
	v1beta1.ReasonNoControlPlane:          true,
	v1beta1.ReasonBadKubeconfig:           true,
	v1beta1.ReasonUnauthorized:            true,
	v1beta1.ReasonWrongCluster:            true,
}

// Outcome is what one install step found.
type Outcome struct {
	Done    bool
	Reason  string
	Message string
	// Requeue asks to look again after this long (waiting on the cluster).
	Requeue time.Duration
	// Err is a transient failure (API error); the controller retries with backoff.
	Err error
}

// Succeeded is a finished step.
func Succeeded(msg string) Outcome {
	return Outcome{Done: true, Reason: v1beta1.ReasonSucceeded, Message: msg}
}

// Failed is a step that needs the user; msg says what to do.
func Failed(reason, msg string) Outcome { return Outcome{Reason: reason, Message: msg} }

// Waiting is a step waiting on the cluster; it is looked at again after.
func Waiting(reason, msg string, after time.Duration) Outcome {
	return Outcome{Reason: reason, Message: msg, Requeue: after}
}

// Transient is a step that failed on an API error; it is retried with backoff.
func Transient(reason, msg string, err error) Outcome {
	return Outcome{Reason: reason, Message: msg, Err: err}
}

// Result is the controller result that follows the outcome.
func (o Outcome) Result() ctrl.Result {
	if o.Err != nil {
		return ctrl.Result{} // the error makes the controller back off
	}
	return ctrl.Result{RequeueAfter: o.Requeue}
}

// Recorder writes step outcomes into a resource's conditions.
type Recorder struct {
	Conditions *[]metav1.Condition
	Generation int64
	// Steps are the condition types in install order.
	Steps []string
	// Before are the conditions as read, if known: an outage that began
	// before this reconcile is dated from them, even when this reconcile
	// set the step True on the way.
	Before []metav1.Condition
}

// Record sets the step's condition and, when the step is not done, marks
// every later step as pending on it. It returns whether the step is done.
//
// An Unreachable outcome says nothing about what the later steps left in
// place, so those keep their last known status and reason (as Deployment
// conditions do while the node is gone), their message saying it is last
// known; only steps that never got further than Pending stay pending.
func (r Recorder) Record(step string, o Outcome) bool {
	status := metav1.ConditionTrue
	if !o.Done {
		status = metav1.ConditionFalse
	}
	r.Set(step, status, o.Reason, o.Message)
	if o.Done {
		return true
	}
	var since metav1.Time
	if c := meta.FindStatusCondition(r.Before, step); c != nil && c.Status == metav1.ConditionFalse {
		since = c.LastTransitionTime
	} else if c := meta.FindStatusCondition(*r.Conditions, step); c != nil {
		since = c.LastTransitionTime
	}
	after := false
	for _, t := range r.Steps {
		if after && !(o.Reason == v1beta1.ReasonUnreachable && r.keepLastKnown(t, since)) {
			r.Set(t, metav1.ConditionUnknown, v1beta1.ReasonPending, "waiting for "+step)
		}
		if t == step {
			after = true
		}
	}
	return false
}

// LastKnownPrefix starts the message of a condition that keeps its last
// known status while the cluster cannot be reached.
const LastKnownPrefix = "Last known"

// keepLastKnown marks condition t as last known, keeping its status, reason,
// transition time and observed generation. It reports false when there is
// nothing known to keep (no condition yet, or one still pending).
func (r Recorder) keepLastKnown(t string, since metav1.Time) bool {
	c := meta.FindStatusCondition(*r.Conditions, t)
	if c == nil || c.Reason == v1beta1.ReasonPending {
		return false
	}
	if !strings.HasPrefix(c.Message, LastKnownPrefix) {
		c.Message = LastKnownStatus(since.Time, c.Message)
	}
	return true
}

// LastKnownStatus is the message of a condition kept while its cluster has
// been unreachable since the given time.
func LastKnownStatus(since time.Time, msg string) string {
	return fmt.Sprintf("%s (cluster unreachable since %s; this is the status of the last successful check before then): %s",
		LastKnownPrefix, since.UTC().Format(time.RFC3339), msg)
}

// Set sets one condition.
func (r Recorder) Set(t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(r.Conditions, metav1.Condition{
		Type:               t,
		Status:             status,
		Reason:             reason,
		Message:            msg,
		ObservedGeneration: r.Generation,
	})
}

// KeepTransitionTimes gives each condition in after whose status is the one
// it had in before the transition time it had there. A reconcile may set a
// condition more than once (True at one step, False at a later one); its
// transition time must say when the status last changed as written, not
// when this reconcile passed through another status.
func KeepTransitionTimes(before, after []metav1.Condition) {
	for i := range after {
		if b := meta.FindStatusCondition(before, after[i].Type); b != nil && b.Status == after[i].Status {
			after[i].LastTransitionTime = b.LastTransitionTime
		}
	}
}

// Phase sums up the conditions of the steps in one word.
func Phase(conds []metav1.Condition, steps []string, deleting bool) v1beta1.Phase {
	if deleting {
		return v1beta1.PhaseDeleting
	}
	if len(conds) == 0 {
		return v1beta1.PhasePending
	}
	for _, t := range steps {
		c := meta.FindStatusCondition(conds, t)
		switch {
		case c == nil:
			return v1beta1.PhaseInstalling
		case c.Status == metav1.ConditionFalse && c.Reason == v1beta1.ReasonUnreachable:
			return v1beta1.PhaseUnreachable
		case c.Status == metav1.ConditionFalse && Terminal[c.Reason]:
			return v1beta1.PhaseFailed
		case c.Status != metav1.ConditionTrue:
			return v1beta1.PhaseInstalling
		}
	}
	return v1beta1.PhaseReady
}

// Summary is the first step that is not done, with its message, for events.
func Summary(conds []metav1.Condition, steps []string) string {
	for _, t := range steps {
		c := meta.FindStatusCondition(conds, t)
		if c != nil && c.Status != metav1.ConditionTrue {
			return c.Type + ": " + c.Message
		}
	}
	return "all steps done"
}
