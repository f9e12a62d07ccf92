package istio

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// stepOrder is the order of the install steps, one condition each.
var stepOrder = []string{
	v1beta1.ConditionPreCheckPassed,
	v1beta1.ConditionResourceDefinitionsCreated,
	v1beta1.ConditionControlPlaneDeployed,
	v1beta1.ConditionReady,
}

// terminalReasons need the user to act; the operator does not retry them on
// a timer but waits for the spec (or the object in the way) to change.
var terminalReasons = map[string]bool{
	v1beta1.ReasonInvalidSpec:          true,
	v1beta1.ReasonUnsupportedVersion:   true,
	v1beta1.ReasonNamespaceTerminating: true,
	v1beta1.ReasonConflict:             true,
	v1beta1.ReasonCAError:              true,
	v1beta1.ReasonDeploymentFailed:     true,
}

// outcome is what one install step found.
type outcome struct {
	done    bool
	reason  string
	message string
	// requeue asks to look again after this long (waiting on the cluster).
	requeue time.Duration
	// err is a transient failure (API error); the controller retries with backoff.
	err error
}

func succeeded(msg string) outcome {
	return outcome{done: true, reason: v1beta1.ReasonSucceeded, message: msg}
}

func failed(reason, msg string) outcome { return outcome{reason: reason, message: msg} }

func waiting(reason, msg string, after time.Duration) outcome {
	return outcome{reason: reason, message: msg, requeue: after}
}

func transient(reason, msg string, err error) outcome {
	return outcome{reason: reason, message: msg, err: err}
}

func (o outcome) result() ctrl.Result {
	if o.err != nil {
		return ctrl.Result{} // the error makes the controller back off
	}
	return ctrl.Result{RequeueAfter: o.requeue}
}

// statusWriter records step outcomes as conditions on one Istio resource.
type statusWriter struct{ ist *v1beta1.Istio }

func newStatus(ist *v1beta1.Istio) statusWriter { return statusWriter{ist} }

// record sets the step's condition and, when the step is not done, marks
// every later step as pending on it. It returns whether the step is done.
func (s statusWriter) record(step string, o outcome) bool {
	status := metav1.ConditionTrue
	if !o.done {
		status = metav1.ConditionFalse
	}
	s.set(step, status, o.reason, o.message)
	if o.done {
		return true
	}
	after := false
	for _, t := range stepOrder {
		if after {
			s.set(t, metav1.ConditionUnknown, v1beta1.ReasonPending, "waiting for "+step)
		}
		if t == step {
			after = true
		}
	}
	return false
}

func (s statusWriter) set(t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.ist.Status.Conditions, metav1.Condition{
		Type:               t,
		Status:             status,
		Reason:             reason,
		Message:            msg,
		ObservedGeneration: s.ist.Generation,
	})
}

// phaseOf summarises the conditions in one word.
func phaseOf(conds []metav1.Condition, deleting bool) v1beta1.Phase {
	if deleting {
		return v1beta1.PhaseDeleting
	}
	if len(conds) == 0 {
		return v1beta1.PhasePending
	}
	for _, t := range stepOrder {
		c := meta.FindStatusCondition(conds, t)
		switch {
		case c == nil:
			return v1beta1.PhaseInstalling
		case c.Status == metav1.ConditionFalse && terminalReasons[c.Reason]:
			return v1beta1.PhaseFailed
		case c.Status != metav1.ConditionTrue:
			return v1beta1.PhaseInstalling
		}
	}
	return v1beta1.PhaseReady
}
