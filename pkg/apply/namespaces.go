package apply

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// OperatorFieldManager is the field manager of everything the operator
// applies, in the primary and in remote clusters.
const OperatorFieldManager = "meshfleet-operator"

// NamespaceLabelsManager is the field manager of the labels meshfleet sets on
// namespaces it does not own, so that giving them up removes exactly those.
const NamespaceLabelsManager = "meshfleet-operator-namespace-labels"

// LabelNamespaces applies labels on namespaces the caller does not own: only
// the labels, under the Applier's field manager (use one of their own, such
// as NamespaceLabelsManager); a namespace that does not exist is created.
// Namespaces that carry labels of that manager but are not in want give them
// up. Reads go through Reader: namespaces are not cached.
func (a *Applier) LabelNamespaces(ctx context.Context, want map[string]map[string]string) error {
	var objs []*unstructured.Unstructured
	for name, l := range want {
		objs = append(objs, namespaceLabels(name, l))
	}
	if _, err := a.Apply(ctx, objs); err != nil {
		return fmt.Errorf("labelling namespaces: %w", err)
	}
	var all corev1.NamespaceList
	if err := a.reader().List(ctx, &all); err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	for i := range all.Items {
		ns := &all.Items[i]
		if _, listed := want[ns.Name]; listed || !ownsLabels(ns.ManagedFields, a.FieldManager) {
			continue
		}
		if err := a.Release(ctx, namespaceLabels(ns.Name, nil)); err != nil {
			return fmt.Errorf("removing meshfleet's labels from namespace %s: %w", ns.Name, err)
		}
	}
	return nil
}

// ownsLabels reports whether manager owns any label in managedFields.
func ownsLabels(fields []metav1.ManagedFieldsEntry, manager string) bool {
	for _, f := range fields {
		if f.Manager == manager && f.FieldsV1 != nil && strings.Contains(f.FieldsV1.GetRawString(), `"f:labels"`) {
			return true
		}
	}
	return false
}

func namespaceLabels(name string, l map[string]string) *unstructured.Unstructured {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if len(l) > 0 {
		ns.SetLabels(l)
	}
	return ns
}
