package conditions

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

func TestRecordMarksLaterStepsPending(t *testing.T) {
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
	s := Recorder{Conditions: &ist.Status.Conditions, Generation: ist.Generation, Steps: istioSteps}
	if !s.Record(v1beta1.ConditionPreCheckPassed, Succeeded("ok")) {
		t.Fatal("a succeeded step is not done")
	}
	if s.Record(v1beta1.ConditionResourceDefinitionsCreated, Failed(v1beta1.ReasonCAError, "no root")) {
		t.Fatal("a failed step is done")
	}
	for _, c := range []struct {
		typ    string
		status metav1.ConditionStatus
		reason string
	}{
		{v1beta1.ConditionPreCheckPassed, metav1.ConditionTrue, v1beta1.ReasonSucceeded},
		{v1beta1.ConditionResourceDefinitionsCreated, metav1.ConditionFalse, v1beta1.ReasonCAError},
		{v1beta1.ConditionControlPlaneDeployed, metav1.ConditionUnknown, v1beta1.ReasonPending},
		{v1beta1.ConditionReady, metav1.ConditionUnknown, v1beta1.ReasonPending},
	} {
		got := meta.FindStatusCondition(ist.Status.Conditions, c.typ)
		if got == nil || got.Status != c.status || got.Reason != c.reason || got.ObservedGeneration != 3 {
			t.Errorf("%s = %+v, want %s/%s", c.typ, got, c.status, c.reason)
		}
	}
}

var istioSteps = []string{
	v1beta1.ConditionPreCheckPassed,
	v1beta1.ConditionResourceDefinitionsCreated,
	v1beta1.ConditionControlPlaneDeployed,
	v1beta1.ConditionReady,
}

func TestPhase(t *testing.T) {
	cond := func(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason}
	}
	T, F, U := metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown
	all := func(ready metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{
			cond(v1beta1.ConditionPreCheckPassed, T, "Succeeded"),
			cond(v1beta1.ConditionResourceDefinitionsCreated, T, "Succeeded"),
			cond(v1beta1.ConditionControlPlaneDeployed, T, "Succeeded"),
			cond(v1beta1.ConditionReady, ready, reason),
		}
	}
	cases := []struct {
		name     string
		conds    []metav1.Condition
		deleting bool
		want     v1beta1.Phase
	}{
		{"new", nil, false, v1beta1.PhasePending},
		{"all true", all(T, "Succeeded"), false, v1beta1.PhaseReady},
		{"rolling out", all(F, v1beta1.ReasonRollingOut), false, v1beta1.PhaseInstalling},
		{"stuck rollout", all(F, v1beta1.ReasonDeploymentFailed), false, v1beta1.PhaseFailed},
		{"invalid spec", []metav1.Condition{cond(v1beta1.ConditionPreCheckPassed, F, v1beta1.ReasonInvalidSpec), cond(v1beta1.ConditionReady, U, "Pending")}, false, v1beta1.PhaseFailed},
		{"transient apply error", []metav1.Condition{cond(v1beta1.ConditionPreCheckPassed, T, "Succeeded"), cond(v1beta1.ConditionResourceDefinitionsCreated, T, "Succeeded"), cond(v1beta1.ConditionControlPlaneDeployed, F, v1beta1.ReasonApplyFailed)}, false, v1beta1.PhaseInstalling},
		{"deleting", all(T, "Succeeded"), true, v1beta1.PhaseDeleting},
	}
	for _, c := range cases {
		if got := Phase(c.conds, istioSteps, c.deleting); got != c.want {
			t.Errorf("%s: phase %s, want %s", c.name, got, c.want)
		}
	}
}
