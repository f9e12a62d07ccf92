package istio

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestGeneratedRule(t *testing.T) {
	rule := func(name string, labels map[string]string, managers ...string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetName(name)
		u.SetLabels(labels)
		var mf []metav1.ManagedFieldsEntry
		for _, m := range managers {
			mf = append(mf, metav1.ManagedFieldsEntry{Manager: m, Operation: metav1.ManagedFieldsOperationUpdate})
		}
		u.SetManagedFields(mf)
		return u
	}
	ours := map[string]string{"app.kubernetes.io/managed-by": "meshfleet-locality"}
	cases := []struct {
		name string
		u    *unstructured.Unstructured
		want bool
	}{
		{"written by the server", rule("meshfleet-locality.reviews.default", ours, "meshfleet-locality"), true},
		{"written by the server, then edited by hand", rule("meshfleet-locality.reviews.default", ours, "meshfleet-locality", "kubectl-edit"), true},
		{"a user's rule squatting name and label", rule("meshfleet-locality.reviews.default", ours, "kubectl-create"), false},
		{"label, but not a generated name", rule("reviews", ours, "meshfleet-locality"), false},
		{"generated name, no label", rule("meshfleet-locality.reviews.default", nil, "meshfleet-locality"), false},
		{"the operator's label", rule("meshfleet-locality.reviews.default", map[string]string{"app.kubernetes.io/managed-by": "meshfleet"}, "meshfleet-locality"), false},
	}
	for _, c := range cases {
		if got := generatedRule(c.u); got != c.want {
			t.Errorf("%s: generatedRule = %v, want %v", c.name, got, c.want)
		}
	}
}
