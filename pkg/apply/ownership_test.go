package apply

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOwned(t *testing.T) {
	labels := map[string]string{"meshfleet.io/owner-kind": "Istio", "meshfleet.io/owner-name": "istio", "meshfleet.io/owner-namespace": "istio-system"}
	other := map[string]string{"meshfleet.io/owner-kind": "Istio", "meshfleet.io/owner-name": "other", "meshfleet.io/owner-namespace": "x"}
	applied := []metav1.ManagedFieldsEntry{{Manager: "meshfleet-operator", Operation: metav1.ManagedFieldsOperationApply}}
	updated := []metav1.ManagedFieldsEntry{{Manager: "meshfleet-operator", Operation: metav1.ManagedFieldsOperationUpdate}}
	kubectl := []metav1.ManagedFieldsEntry{{Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate}}
	desired := &metav1.ObjectMeta{Labels: labels}
	for _, c := range []struct {
		name string
		live metav1.ObjectMeta
		want bool
	}{
		{"our UID", metav1.ObjectMeta{Annotations: map[string]string{OwnerUIDAnnotation: "u1"}}, true},
		{"another owner's UID, our labels", metav1.ObjectMeta{Labels: labels, ManagedFields: applied, Annotations: map[string]string{OwnerUIDAnnotation: "u2"}}, false},
		{"user's object with our labels", metav1.ObjectMeta{Labels: labels, ManagedFields: kubectl}, false},
		{"user's object without labels", metav1.ObjectMeta{ManagedFields: kubectl}, false},
		{"applied by us before UIDs were recorded", metav1.ObjectMeta{Labels: labels, ManagedFields: applied}, true},
		{"applied by us for another owner", metav1.ObjectMeta{Labels: other, ManagedFields: applied}, false},
		{"our field manager by update, not apply", metav1.ObjectMeta{Labels: labels, ManagedFields: updated}, false},
	} {
		if got := Owned(&c.live, desired, "u1", "meshfleet-operator"); got != c.want {
			t.Errorf("%s: Owned = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestConflictErrorNamesObjectsAndFix(t *testing.T) {
	e := &ConflictError{Conflicts: []Conflict{{Key: "Secret/istio-system/cacerts", Holder: "written by kubectl-create"}}}
	want := "Secret/istio-system/cacerts (written by kubectl-create) already exists and was not created by this resource, so nothing was changed: delete it, or annotate it meshfleet.io/adopt=true to let meshfleet take it over and replace its content"
	if e.Error() != want {
		t.Errorf("got  %s\nwant %s", e.Error(), want)
	}
}
