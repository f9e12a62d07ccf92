package istio

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// TestStrategyProblem: RevisionBased is refused when an installed control
// plane switches strategy and when a named tag points at no installed
// revision, each with a message naming the field; InPlace, a fresh
// RevisionBased install and one with remotes joined (decision 47) pass.
func TestStrategyProblem(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1beta1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	rb := &v1beta1.UpdateStrategy{Type: v1beta1.UpdateStrategyRevisionBased}
	remote := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "r1", Namespace: "istio-system"}}
	for _, c := range []struct {
		name    string
		spec    *v1beta1.UpdateStrategy
		status  v1beta1.IstioStatus
		remote  bool
		problem string
	}{
		{name: "InPlace", spec: nil},
		{name: "fresh RevisionBased", spec: rb},
		{name: "RevisionBased with a remote", spec: rb, remote: true},
		{name: "tag on an installed revision", spec: &v1beta1.UpdateStrategy{Type: v1beta1.UpdateStrategyRevisionBased,
			RevisionTags: []v1beta1.RevisionTag{{Name: "stable", Revision: "1.29.6"}, {Name: "canary", Revision: "1-29-6"}}}},
		{name: "tag on a missing revision", spec: &v1beta1.UpdateStrategy{Type: v1beta1.UpdateStrategyRevisionBased,
			RevisionTags: []v1beta1.RevisionTag{{Name: "canary", Revision: "1-31-0"}}}, problem: "spec.updateStrategy.revisionTags[0].revision: tag canary points at \"1-31-0\", which is not installed; use one of 1-29-6 (1.29.6)"},
		{name: "InPlace to RevisionBased", spec: rb, status: v1beta1.IstioStatus{Version: "1.29.6"}, problem: "from InPlace to RevisionBased"},
		{name: "RevisionBased to InPlace", status: v1beta1.IstioStatus{Revisions: []v1beta1.RevisionStatus{{Name: "1-29-6"}}}, problem: "from RevisionBased to InPlace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(scheme)
			if c.remote {
				b = b.WithObjects(remote.DeepCopy())
			}
			r := &Reconciler{Client: b.Build()}
			ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
				Spec: v1beta1.IstioSpec{Version: "1.29.6", UpdateStrategy: c.spec}, Status: c.status}
			got := r.strategyProblem(t.Context(), ist)
			if c.problem == "" && got != "" || c.problem != "" && !strings.Contains(got, c.problem) {
				t.Errorf("strategyProblem = %q, want %q", got, c.problem)
			}
			if got != "" && !strings.Contains(got, "spec.updateStrategy.") {
				t.Errorf("message %q does not name the field", got)
			}
		})
	}
}
