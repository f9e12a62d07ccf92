package apply

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations that record and grant ownership.
const (
	// OwnerUIDAnnotation holds the UID of the resource (Istio, RemoteIstio)
	// an object was created for. Only that resource changes or deletes it.
	OwnerUIDAnnotation = "meshfleet.io/owner-uid"
	// AdoptAnnotation, set to "true" by a user on an existing object, lets
	// meshfleet take it over (its fields are then replaced by the rendered ones).
	AdoptAnnotation = "meshfleet.io/adopt"
)

// ownedLabels are the labels that name an owner; an object that carries them
// but not the owner's UID is not proof of ownership (anyone can set labels).
var ownedLabels = []string{"meshfleet.io/owner-kind", "meshfleet.io/owner-name", "meshfleet.io/owner-namespace"}

// Owned reports whether live belongs to the owner with uid: it carries the
// owner's UID, or (objects created before the UID was recorded) it carries
// no UID, was created by server-side apply of fieldManager and names the
// same owner in its labels as desired does.
func Owned(live, desired metav1.Object, uid types.UID, fieldManager string) bool {
	if got, ok := live.GetAnnotations()[OwnerUIDAnnotation]; ok {
		return uid != "" && got == string(uid)
	}
	if !appliedBy(live.GetManagedFields(), fieldManager) {
		return false
	}
	for _, l := range ownedLabels {
		if live.GetLabels()[l] == "" || live.GetLabels()[l] != desired.GetLabels()[l] {
			return false
		}
	}
	return true
}

// adoptable reports whether a user has handed live over to meshfleet.
func adoptable(live metav1.Object) bool {
	return live.GetAnnotations()[AdoptAnnotation] == "true"
}

func appliedBy(fields []metav1.ManagedFieldsEntry, manager string) bool {
	for _, f := range fields {
		if f.Manager == manager && f.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// Conflict is an existing object meshfleet did not create.
type Conflict struct {
	// Key is kind/namespace/name.
	Key string
	// Holder says who has it: another meshfleet owner, or the field
	// managers that wrote it.
	Holder string
}

// ConflictError lists the objects in the way of an apply. Nothing was written.
type ConflictError struct {
	Conflicts []Conflict
}

func (e *ConflictError) Error() string {
	parts := make([]string, 0, len(e.Conflicts))
	for _, c := range e.Conflicts {
		parts = append(parts, fmt.Sprintf("%s (%s)", c.Key, c.Holder))
	}
	return fmt.Sprintf("%s already exist%s and %s not created by this resource, so nothing was changed: delete %s, or annotate %s %s=true to let meshfleet take %s over and replace %s content",
		strings.Join(parts, ", "), plural(len(parts), "s", ""), plural(len(parts), "was", "were"),
		plural(len(parts), "it", "them"), plural(len(parts), "it", "each"), AdoptAnnotation,
		plural(len(parts), "it", "them"), plural(len(parts), "its", "their"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// holder describes who has live, for a ConflictError.
func holder(live *unstructured.Unstructured) string {
	l := live.GetLabels()
	if uid := live.GetAnnotations()[OwnerUIDAnnotation]; uid != "" {
		if l[ownedLabels[0]] != "" {
			return fmt.Sprintf("belongs to %s %s/%s", l[ownedLabels[0]], l[ownedLabels[2]], l[ownedLabels[1]])
		}
		return "belongs to another meshfleet resource (UID " + uid + ")"
	}
	seen := map[string]bool{}
	var managers []string
	for _, f := range live.GetManagedFields() {
		if !seen[f.Manager] {
			seen[f.Manager] = true
			managers = append(managers, f.Manager)
		}
	}
	sort.Strings(managers)
	if len(managers) == 0 {
		return "created outside meshfleet"
	}
	return "written by " + strings.Join(managers, ", ")
}
