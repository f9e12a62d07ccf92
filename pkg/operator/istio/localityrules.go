package istio

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=list

// generatedRule reports whether a DestinationRule is one the locality server
// wrote: its label, its generated name and a managed-fields entry of the
// server's field manager, all three. A user's rule that carries the label or
// squats a generated name was created by another manager (the server never
// writes to a name it did not create), so it is never taken for one.
func generatedRule(u *unstructured.Unstructured) bool {
	if u.GetLabels()[locality.LabelManagedBy] != locality.ManagedBy || !strings.HasPrefix(u.GetName(), locality.NamePrefix) {
		return false
	}
	for _, f := range u.GetManagedFields() {
		if f.Manager == rulesync.FieldManager {
			return true
		}
	}
	return false
}

// deleteLocalityRules deletes the DestinationRules the locality server wrote
// (into the control plane's namespace, and beside users' rules with subsets
// only in their namespaces, decision 46), once no pod of the server is left to
// write them again. It returns what it deleted, or a message saying what it
// waits for; a rule changed meanwhile (UID or resourceVersion precondition)
// is looked at again on the next pass.
func (r *Reconciler) deleteLocalityRules(ctx context.Context, namespace string) (deleted []string, waiting string, err error) {
	pods := &corev1.PodList{}
	if err := r.APIReader.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{"app": render.LocalityServerName}); err != nil {
		return nil, "", fmt.Errorf("list the locality server's pods in %s: %w", namespace, err)
	}
	if n := len(pods.Items); n > 0 {
		return nil, fmt.Sprintf("uninstalling: waiting for %d pod(s) of the locality server (%s/%s) to stop before deleting the DestinationRules it wrote",
			n, namespace, pods.Items[0].Name), nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(rulesync.GVR.GroupVersion().WithKind("DestinationRuleList"))
	err = r.APIReader.List(ctx, list, client.MatchingLabels{locality.LabelManagedBy: locality.ManagedBy})
	if meta.IsNoMatchError(err) {
		return nil, "", nil // no Istio CRDs: nothing was written
	}
	if err != nil {
		return nil, "", fmt.Errorf("list the locality server's DestinationRules: %w", err)
	}
	for i := range list.Items {
		u := &list.Items[i]
		if !generatedRule(u) || u.GetDeletionTimestamp() != nil {
			continue
		}
		uid, rv := u.GetUID(), u.GetResourceVersion()
		err := r.Client.Delete(ctx, u, client.Preconditions{UID: &uid, ResourceVersion: &rv})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return deleted, "", fmt.Errorf("delete DestinationRule %s/%s written by the locality server: %w", u.GetNamespace(), u.GetName(), err)
		}
		deleted = append(deleted, "DestinationRule/"+u.GetNamespace()+"/"+u.GetName())
	}
	return deleted, "", nil
}
