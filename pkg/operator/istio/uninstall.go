package istio

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/operator/internal/reconciler"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// uninstall deletes everything the Istio resource installed, gives up its
// namespace labels, deletes the DestinationRules the locality server wrote
// once no pod of it is left, then reports done (the finalizer is released).
// Istio's CRDs (and with them users' Istio config) and the root CA Secret
// are kept on purpose.
func (r *Reconciler) uninstall(ctx context.Context, ist *v1beta1.Istio) (bool, ctrl.Result, error) {
	log := logf.FromContext(ctx)
	before := ist.Status.DeepCopy()
	joined, err := r.joinedRemotes(ctx, ist)
	if err != nil {
		return false, ctrl.Result{}, err
	}
	if len(joined) > 0 {
		// Hold: each remote runs an injection webhook (failurePolicy Fail)
		// that calls this istiod; uninstalling it first would stop pod
		// creation in those clusters.
		newStatus(ist).Set(v1beta1.ConditionReady, "False", v1beta1.ReasonRemotesJoined, fmt.Sprintf(
			"uninstall is held: RemoteIstio %s still joined to this control plane, and each remote's injection webhook calls this istiod; delete %s first (each leaves its cluster cleanly; one whose cluster is gone leaves with the annotation %s=true), then this Istio resource is uninstalled",
			strings.Join(joined, ", "), plural(len(joined), "it", "them"), remoteistio.AnnotationAbandon))
		if _, err := r.writeStatus(ctx, ist, before); err != nil {
			return false, ctrl.Result{}, err
		}
		return false, ctrl.Result{RequeueAfter: conflictRecheck}, nil
	}
	newStatus(ist).Set(v1beta1.ConditionReady, "False", v1beta1.ReasonDeleting, "uninstalling the control plane")
	if conflict, err := r.writeStatus(ctx, ist, before); err != nil || conflict {
		if conflict {
			return false, ctrl.Result{RequeueAfter: reconciler.ConflictRetry}, nil
		}
		return false, ctrl.Result{}, err
	}

	owner := render.Owner{Kind: "Istio", Name: ist.Name, Namespace: ist.Namespace}
	applier := &apply.Applier{Client: r.Client, FieldManager: apply.OperatorFieldManager, OwnerUID: ist.UID}
	res, err := applier.Prune(ctx, labels.Set(render.OwnerLabels(owner)), render.PrunedKinds, nil)
	if err != nil {
		return false, ctrl.Result{}, fmt.Errorf("uninstall Istio %s/%s: %w", ist.Namespace, ist.Name, err)
	}
	if err := r.labelNamespaces(ctx, nil); err != nil {
		return false, ctrl.Result{}, fmt.Errorf("uninstall Istio %s/%s: %w", ist.Namespace, ist.Name, err)
	}
	if len(res.Deleted) > 0 {
		log.Info("deleted control plane objects", "objects", res.Deleted)
		// Look again: deletion is asynchronous, and nothing may be left behind.
		return false, ctrl.Result{RequeueAfter: time.Second}, nil
	}
	// The locality server is gone with the rest: now the rules it wrote
	// (which no owner label ties to this resource) can go too.
	rules, waiting, err := r.deleteLocalityRules(ctx, ist.Namespace)
	if err != nil {
		return false, ctrl.Result{}, fmt.Errorf("uninstall Istio %s/%s: %w", ist.Namespace, ist.Name, err)
	}
	if waiting != "" {
		before := ist.Status.DeepCopy()
		newStatus(ist).Set(v1beta1.ConditionReady, "False", v1beta1.ReasonDeleting, waiting)
		if _, err := r.writeStatus(ctx, ist, before); err != nil {
			return false, ctrl.Result{}, err
		}
		return false, ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if len(rules) > 0 {
		log.Info("deleted the locality server's DestinationRules", "objects", rules)
		return false, ctrl.Result{RequeueAfter: time.Second}, nil
	}
	meshca.ForgetCluster(ist.Status.ClusterName)
	log.Info("uninstalled control plane")
	return true, ctrl.Result{}, nil
}

// joinedRemotes lists, as namespace/name, the RemoteIstios that join (or
// may join) this control plane, those leaving included: they are gone only
// once their finalizer has cleaned up the remote.
func (r *Reconciler) joinedRemotes(ctx context.Context, ist *v1beta1.Istio) ([]string, error) {
	var list v1beta1.RemoteIstioList
	if err := r.Client.List(ctx, &list, client.InNamespace(ist.Namespace)); err != nil {
		return nil, fmt.Errorf("list RemoteIstio resources in %s: %w", ist.Namespace, err)
	}
	var out []string
	for _, ri := range list.Items {
		if ri.Spec.IstioRef == "" || ri.Spec.IstioRef == ist.Name {
			out = append(out, ri.Namespace+"/"+ri.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
