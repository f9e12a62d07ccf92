package istio

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// preCheck validates the spec and the cluster before anything is written.
func (r *Reconciler) preCheck(ctx context.Context, ist *v1beta1.Istio) (*render.ControlPlane, outcome) {
	if v := ist.Spec.Version; v != "" {
		if _, err := render.ChartSetFor(v); err != nil {
			return nil, failed(v1beta1.ReasonUnsupportedIstioVersion, "spec.version: "+err.Error())
		}
	}
	if msg := r.strategyProblem(ctx, ist); msg != "" {
		return nil, failed(v1beta1.ReasonInvalidSpec, msg)
	}
	cp, errs := render.FromIstio(ist)
	if len(errs) > 0 {
		msgs := make([]string, 0, len(errs))
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		return nil, failed(v1beta1.ReasonInvalidSpec, "fix the spec: "+strings.Join(msgs, "; "))
	}

	info, err := r.Discovery.ServerVersionWithContext(ctx)
	if err != nil {
		return nil, transient(v1beta1.ReasonPending, fmt.Sprintf("cannot read the Kubernetes version: %v", err), err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return nil, failed(v1beta1.ReasonUnsupportedVersion, fmt.Sprintf("cannot parse the Kubernetes version %q", info.GitVersion))
	}
	if v.LessThan(render.MinKubernetesVersion) {
		return nil, failed(v1beta1.ReasonUnsupportedVersion,
			fmt.Sprintf("Kubernetes %s is older than %s, the oldest this Istio release supports; upgrade the cluster", info.GitVersion, render.MinKubernetesVersion))
	}

	ns := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: ist.Namespace}, ns); err != nil {
		return nil, transient(v1beta1.ReasonPending, fmt.Sprintf("cannot read namespace %s: %v", ist.Namespace, err), err)
	}
	if ns.Status.Phase == corev1.NamespaceTerminating {
		return nil, failed(v1beta1.ReasonNamespaceTerminating,
			fmt.Sprintf("namespace %s is being deleted; create the Istio resource in a namespace that is not terminating", ist.Namespace))
	}

	if msg, err := r.conflict(ctx, ist); err != nil {
		return nil, transient(v1beta1.ReasonPending, fmt.Sprintf("cannot check for other installs: %v", err), err)
	} else if msg != "" {
		// Looked at again: the other install may go away.
		return nil, waiting(v1beta1.ReasonConflict, msg, conflictRecheck)
	}
	msg := fmt.Sprintf("Kubernetes %s, namespace %s, no conflicting install", info.GitVersion, ist.Namespace)
	if ist.Spec.LocalityLB.ServerAddress != "" {
		msg += "; spec.localityLB.serverAddress is deprecated and ignored: the locality server writes its DestinationRules into this cluster's API, where istiod reads them; remove the field"
	}
	return cp, succeeded(msg)
}

// conflict returns why this install would collide with another control
// plane, or "" when it would not. One mesh per cluster, whatever the
// namespace: of several Istio resources the oldest holds the cluster, also
// while it is being uninstalled, and the others wait; an istiod that this
// resource did not install, in any namespace, is another mesh.
func (r *Reconciler) conflict(ctx context.Context, ist *v1beta1.Istio) (string, error) {
	var list v1beta1.IstioList
	if err := r.Client.List(ctx, &list); err != nil {
		return "", fmt.Errorf("list Istio resources: %w", err)
	}
	if holder := holderOf(list.Items); holder != nil && (holder.Namespace != ist.Namespace || holder.Name != ist.Name) {
		if !holder.DeletionTimestamp.IsZero() {
			return fmt.Sprintf("Istio %s/%s holds the control plane of this cluster and is being uninstalled (one mesh per cluster, whatever the namespace); this one installs once it is gone",
				holder.Namespace, holder.Name), nil
		}
		return fmt.Sprintf("Istio %s/%s already manages the control plane of this cluster (one mesh per cluster, whatever the namespace); delete this Istio resource, or delete that one first",
			holder.Namespace, holder.Name), nil
	}

	var deps appsv1.DeploymentList
	if err := r.APIReader.List(ctx, &deps, client.MatchingLabels{"app": "istiod"}); err != nil {
		return "", fmt.Errorf("list istiod Deployments: %w", err)
	}
	own := &metav1.ObjectMeta{Labels: render.OwnerLabels(render.Owner{Kind: "Istio", Name: ist.Name, Namespace: ist.Namespace})}
	for i := range deps.Items {
		dep := &deps.Items[i]
		if apply.Owned(dep, own, ist.UID, apply.OperatorFieldManager) {
			continue
		}
		by := dep.Labels[render.LabelManagedBy]
		switch {
		case by == render.ManagedByValue:
			by = fmt.Sprintf("meshfleet for Istio %s/%s", dep.Labels[render.LabelOwnerNamespace], dep.Labels[render.LabelOwnerName])
		case by == "":
			by = "another tool"
		}
		return fmt.Sprintf("Deployment %s/%s (app=istiod) exists and is managed by %s, not by this Istio resource (one mesh per cluster); uninstall that control plane (istioctl uninstall --purge, or helm uninstall) first",
			dep.Namespace, dep.Name, by), nil
	}
	return "", nil
}

// holderOf returns the Istio resource that holds the cluster: the oldest,
// deleting or not (ties broken by namespace/name).
func holderOf(items []v1beta1.Istio) *v1beta1.Istio {
	var h *v1beta1.Istio
	for i := range items {
		o := &items[i]
		if h == nil || o.CreationTimestamp.Before(&h.CreationTimestamp) ||
			o.CreationTimestamp.Equal(&h.CreationTimestamp) && o.Namespace+"/"+o.Name < h.Namespace+"/"+h.Name {
			h = o
		}
	}
	return h
}

// strategyProblem says why spec.updateStrategy cannot be honoured, "" when
// it can. Switching an installed control plane between InPlace and
// RevisionBased would delete the istiod its pods use, so it is refused; a
// named tag must point at an installed revision (or spec.version's).
// Remotes are served per revision (decision 47): nothing about them is
// refused here.
func (r *Reconciler) strategyProblem(ctx context.Context, ist *v1beta1.Istio) string {
	if !revisionBased(ist) {
		if len(ist.Status.Revisions) > 0 {
			return "spec.updateStrategy.type: switching from RevisionBased to InPlace would delete the revisions pods use; set it back to RevisionBased"
		}
		return ""
	}
	if ist.Status.Version != "" && len(ist.Status.Revisions) == 0 {
		return "spec.updateStrategy.type: switching an installed control plane from InPlace to RevisionBased is not supported (it would delete the istiod pods use); set it back to InPlace, or install a new Istio resource with RevisionBased"
	}
	installed := append([]v1beta1.RevisionStatus(nil), ist.Status.Revisions...)
	installed = append(installed, v1beta1.RevisionStatus{Name: render.RevisionName(ist.Spec.Version), Version: ist.Spec.Version})
	for i, t := range namedTags(ist) {
		if resolveTag(t.Revision, installed) == "" {
			names := make([]string, 0, len(installed))
			for _, rv := range installed {
				names = append(names, rv.Name+" ("+rv.Version+")")
			}
			return fmt.Sprintf("spec.updateStrategy.revisionTags[%d].revision: tag %s points at %q, which is not installed; use one of %s", i, t.Name, t.Revision, strings.Join(names, ", "))
		}
	}
	if ro := ist.Spec.UpdateStrategy.Rollout; ro != nil {
		return r.rolloutProblem(ctx, ist, ro)
	}
	return ""
}
