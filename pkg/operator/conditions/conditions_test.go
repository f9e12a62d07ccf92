package conditions

import (
	"testing"
	"time"

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

var remoteSteps = []string{
	v1beta1.ConditionConnected,
	v1beta1.ConditionCertificatesIssued,
	v1beta1.ConditionInstalled,
	v1beta1.ConditionReady,
}

func TestUnreachableKeepsLastKnown(t *testing.T) {
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	s := Recorder{Conditions: &ri.Status.Conditions, Generation: 1, Steps: remoteSteps}
	for _, step := range remoteSteps {
		s.Record(step, Succeeded(step+" done"))
	}
	before := append([]metav1.Condition(nil), ri.Status.Conditions...)
	s.Generation = 2 // the spec changed during the outage: nothing was checked for it
	s.Record(v1beta1.ConditionConnected, Waiting(v1beta1.ReasonUnreachable, "connection refused", 0))
	s.Record(v1beta1.ConditionConnected, Waiting(v1beta1.ReasonUnreachable, "connection refused", 0)) // a second pass changes nothing

	c := meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected)
	if c.Status != metav1.ConditionFalse || c.Reason != v1beta1.ReasonUnreachable {
		t.Errorf("Connected = %+v", c)
	}
	for _, step := range remoteSteps[1:] {
		got, was := meta.FindStatusCondition(ri.Status.Conditions, step), meta.FindStatusCondition(before, step)
		if got.Status != metav1.ConditionTrue || got.Reason != v1beta1.ReasonSucceeded || got.ObservedGeneration != 1 || got.LastTransitionTime != was.LastTransitionTime {
			t.Errorf("%s = %+v, want its last known status kept", step, got)
		}
		want := LastKnownStatus(c.LastTransitionTime.Time, step+" done")
		if got.Message != want {
			t.Errorf("%s message %q, want %q", step, got.Message, want)
		}
	}
	if p := Phase(ri.Status.Conditions, remoteSteps, false); p != v1beta1.PhaseUnreachable {
		t.Errorf("phase %s, want Unreachable", p)
	}

	// A later pass reaches the cluster, then loses it again at a later
	// step: the outage is still dated from its start.
	start := c.LastTransitionTime
	s.Before = append([]metav1.Condition(nil), ri.Status.Conditions...)
	s.Record(v1beta1.ConditionConnected, Succeeded("connected"))
	s.Record(v1beta1.ConditionCertificatesIssued, Succeeded("issued again"))
	meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected).LastTransitionTime = metav1.NewTime(start.Add(time.Minute))
	s.Record(v1beta1.ConditionConnected, Waiting(v1beta1.ReasonUnreachable, "timeout", 0))
	if got, want := meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionCertificatesIssued).Message, LastKnownStatus(start.Time, "issued again"); got != want {
		t.Errorf("CertificatesIssued message %q, want %q", got, want)
	}
	s.Before = nil

	// Back: fresh status, no "last known" left.
	for _, step := range remoteSteps {
		s.Record(step, Succeeded(step+" done"))
	}
	for _, c := range ri.Status.Conditions {
		if c.Status != metav1.ConditionTrue || c.Message != c.Type+" done" || c.ObservedGeneration != 2 {
			t.Errorf("after recovery %+v", c)
		}
	}
	if p := Phase(ri.Status.Conditions, remoteSteps, false); p != v1beta1.PhaseReady {
		t.Errorf("phase %s after recovery, want Ready", p)
	}
}

func TestUnreachableBeforeAnythingKnown(t *testing.T) {
	ri := &v1beta1.RemoteIstio{}
	s := Recorder{Conditions: &ri.Status.Conditions, Steps: remoteSteps}
	s.Record(v1beta1.ConditionConnected, Waiting(v1beta1.ReasonUnreachable, "no route", 0))
	for _, step := range remoteSteps[1:] {
		if c := meta.FindStatusCondition(ri.Status.Conditions, step); c.Status != metav1.ConditionUnknown || c.Reason != v1beta1.ReasonPending {
			t.Errorf("%s = %+v, want pending: nothing is known yet", step, c)
		}
	}
	// A failure that needs the user still resets what follows.
	s.Record(v1beta1.ConditionConnected, Failed(v1beta1.ReasonUnauthorized, "401"))
	if p := Phase(ri.Status.Conditions, remoteSteps, false); p != v1beta1.PhaseFailed {
		t.Errorf("phase %s, want Failed", p)
	}
}

func TestKeepTransitionTimes(t *testing.T) {
	old := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(old.Add(time.Hour))
	before := []metav1.Condition{{Type: "A", Status: metav1.ConditionFalse, LastTransitionTime: old}, {Type: "B", Status: metav1.ConditionTrue, LastTransitionTime: old}}
	after := []metav1.Condition{{Type: "A", Status: metav1.ConditionFalse, LastTransitionTime: now}, {Type: "B", Status: metav1.ConditionFalse, LastTransitionTime: now}, {Type: "C", Status: metav1.ConditionTrue, LastTransitionTime: now}}
	KeepTransitionTimes(before, after)
	if after[0].LastTransitionTime != old || after[1].LastTransitionTime != now || after[2].LastTransitionTime != now {
		t.Errorf("transition times %v %v %v", after[0].LastTransitionTime, after[1].LastTransitionTime, after[2].LastTransitionTime)
	}
}
