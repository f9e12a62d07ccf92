package remoteistio

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// AnnotationAbandon, set to "true" on a RemoteIstio being deleted, lets it go
// without cleaning up a remote cluster that can no longer be reached.
const AnnotationAbandon = "meshfleet.io/abandon-remote"

// leave removes the cluster from the mesh: the remote secret in the primary
// (istiod forgets the cluster's endpoints at once), then everything the
// operator installed in the remote, then meshfleet's namespace labels there.
// Istio's CRDs stay in the remote, as they do on uninstall of the primary.
// It reports done when the cluster has left (the finalizer is released).
func (r *Reconciler) leave(ctx context.Context, ri *v1beta1.RemoteIstio) (bool, ctrl.Result, error) {
	log := logf.FromContext(ctx)
	before := ri.Status.DeepCopy()
	owner := render.Owner{Kind: "RemoteIstio", Name: ri.Name, Namespace: ri.Namespace}
	sel := labels.Set(render.OwnerLabels(owner))

	primary := &apply.Applier{Client: r.Client, FieldManager: apply.OperatorFieldManager, OwnerUID: ri.UID}
	if _, err := primary.Prune(ctx, sel, []schema.GroupVersionKind{{Version: "v1", Kind: "Secret"}}, nil); err != nil {
		return false, ctrl.Result{}, fmt.Errorf("delete the remote secret of RemoteIstio %s/%s: %w", ri.Namespace, ri.Name, err)
	}

	clusterName := ri.Status.ClusterName
	if clusterName == "" {
		clusterName = ri.Name
	}
	if ri.Annotations[AnnotationAbandon] != "true" {
		rem, out := r.connect(ctx, ri, clusterName)
		if !out.Done {
			r.recorder(ri).Set(v1beta1.ConditionConnected, "False", out.Reason,
				fmt.Sprintf("cannot clean up cluster %s: %s; fix the connection, or annotate the RemoteIstio %s=true to leave its objects behind",
					clusterName, out.Message, AnnotationAbandon))
			if _, err := r.writeStatus(ctx, ri, before); err != nil {
				return false, ctrl.Result{}, err
			}
			return false, ctrl.Result{RequeueAfter: 15 * time.Second}, nil
		}
		remote := &apply.Applier{Client: rem.client, FieldManager: apply.OperatorFieldManager, OwnerUID: ri.UID}
		res, err := remote.Prune(ctx, sel, render.PrunedKinds, nil)
		if err != nil {
			return false, ctrl.Result{}, fmt.Errorf("clean up cluster %s: %w", clusterName, err)
		}
		ns := &apply.Applier{Client: rem.client, FieldManager: apply.NamespaceLabelsManager}
		if err := ns.LabelNamespaces(ctx, nil); err != nil {
			return false, ctrl.Result{}, fmt.Errorf("clean up cluster %s: %w", clusterName, err)
		}
		if len(res.Deleted) > 0 {
			log.Info("deleted remote objects", "cluster", clusterName, "objects", res.Deleted)
			return false, ctrl.Result{RequeueAfter: time.Second}, nil
		}
	}
	meshca.ForgetCluster(clusterName)
	log.Info("cluster left the mesh", "cluster", clusterName)
	return true, ctrl.Result{}, nil
}
