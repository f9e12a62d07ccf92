package istio

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// conflictRecheck is how often an install held up by objects it did not
// create looks again (they are not watched).
const conflictRecheck = 30 * time.Second

// deploy applies every rendered object and the cacerts Secret, labels the
// namespaces, and deletes objects this Istio resource no longer renders.
func (r *Reconciler) deploy(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane, m *render.Manifest, certs *meshca.Issued) outcome {
	log := logf.FromContext(ctx)
	objs := m.Objects
	if certs.Secret != nil {
		// Not with an external CA: the user's cacerts is never written.
		objs = append([]*unstructured.Unstructured{certs.Secret}, m.Objects...)
	}
	ref := ownerReference(ist)
	for _, o := range objs {
		if o.GetNamespace() == ist.Namespace {
			o.SetOwnerReferences([]metav1.OwnerReference{ref})
		}
	}

	applier := &apply.Applier{Client: r.Client, Uncached: r.APIReader, FieldManager: apply.OperatorFieldManager, OwnerUID: ist.UID}
	res, err := applier.Apply(ctx, objs)
	var conflict *apply.ConflictError
	if errors.As(err, &conflict) {
		// Not watched (the cache holds only meshfleet's objects): look again.
		return waiting(v1beta1.ReasonNotOwned, conflict.Error(), conflictRecheck)
	}
	if err != nil {
		return transient(v1beta1.ReasonApplyFailed, fmt.Sprintf("%v; the operator retries with backoff", err), err)
	}
	if err := r.labelNamespaces(ctx, m.NamespaceLabels); err != nil {
		return transient(v1beta1.ReasonApplyFailed, err.Error(), err)
	}

	keep := map[string]bool{}
	for _, o := range objs {
		keep[apply.Key(o)] = true
	}
	if certs.Secret == nil {
		// External CA: cacerts is the user's, never pruned.
		keep["Secret/"+cp.Namespace+"/"+meshca.CACertsSecretName] = true
	}
	pruned, err := applier.Prune(ctx, labels.Set(render.OwnerLabels(cp.Owner)), render.PrunedKinds, keep)
	if err != nil {
		return transient(v1beta1.ReasonApplyFailed, fmt.Sprintf("deleting objects no longer rendered: %v", err), err)
	}
	res.Deleted = pruned.Deleted
	if res.Writes() > 0 {
		log.Info("applied control plane", "created", res.Created, "updated", res.Updated, "drift", res.Drift, "deleted", res.Deleted)
		if len(res.Updated) > 0 && len(res.Created) == 0 {
			r.Events.Eventf(ist, nil, corev1.EventTypeNormal, "Repaired", "Apply",
				"brought %d object(s) back to the desired state: %s", len(res.Updated), strings.Join(res.Updated, ", "))
		}
	}
	return succeeded(fmt.Sprintf("%d objects applied", len(objs)))
}

// labelNamespaces applies meshfleet's labels on namespaces it does not own,
// and gives up those of namespaces no longer listed.
func (r *Reconciler) labelNamespaces(ctx context.Context, want map[string]map[string]string) error {
	applier := &apply.Applier{Client: r.Client, Reader: r.APIReader, FieldManager: apply.NamespaceLabelsManager}
	return applier.LabelNamespaces(ctx, want)
}

func ownerReference(ist *v1beta1.Istio) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion:         v1beta1.GroupVersion.String(),
		Kind:               "Istio",
		Name:               ist.Name,
		UID:                ist.UID,
		Controller:         &t,
		BlockOwnerDeletion: &t,
	}
}
