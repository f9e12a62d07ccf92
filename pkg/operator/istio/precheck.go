package istio

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// MinKubernetesVersion is the oldest Kubernetes the rendered charts support.
var MinKubernetesVersion = version.MustParseGeneric("1.29.0")

// preCheck validates the spec and the cluster before anything is written.
func (r *Reconciler) preCheck(ctx context.Context, ist *v1beta1.Istio) (*render.ControlPlane, outcome) {
	cp, errs := render.FromIstio(ist)
	if len(errs) > 0 {
		msgs := make([]string, 0, len(errs))
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		return nil, failed(v1beta1.ReasonInvalidSpec, "fix the spec: "+strings.Join(msgs, "; "))
	}

	info, err := r.Discovery.ServerVersion()
	if err != nil {
		return nil, transient(v1beta1.ReasonPending, fmt.Sprintf("cannot read the Kubernetes version: %v", err), err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return nil, failed(v1beta1.ReasonUnsupportedVersion, fmt.Sprintf("cannot parse the Kubernetes version %q", info.GitVersion))
	}
	if v.LessThan(MinKubernetesVersion) {
		return nil, failed(v1beta1.ReasonUnsupportedVersion,
			fmt.Sprintf("Kubernetes %s is older than %s, the oldest this Istio release supports; upgrade the cluster", info.GitVersion, MinKubernetesVersion))
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
		return nil, failed(v1beta1.ReasonConflict, msg)
	}
	msg := fmt.Sprintf("Kubernetes %s, namespace %s, no conflicting install", info.GitVersion, ist.Namespace)
	if ist.Spec.LocalityLB.ServerAddress != "" {
		msg += "; spec.localityLB.serverAddress is deprecated and ignored: the locality server writes its DestinationRules into this cluster's API, where istiod reads them; remove the field"
	}
	return cp, succeeded(msg)
}

// conflict returns why this install would collide with another control plane,
// or "" when it would not. Of several Istio resources in one cluster, the
// oldest keeps the control plane and the others wait.
func (r *Reconciler) conflict(ctx context.Context, ist *v1beta1.Istio) (string, error) {
	var list v1beta1.IstioList
	if err := r.Client.List(ctx, &list); err != nil {
		return "", fmt.Errorf("list Istio resources: %w", err)
	}
	others := make([]v1beta1.Istio, 0, len(list.Items))
	for _, o := range list.Items {
		if o.DeletionTimestamp.IsZero() {
			others = append(others, o)
		}
	}
	sort.Slice(others, func(i, j int) bool {
		a, b := others[i], others[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	if len(others) > 0 && (others[0].Namespace != ist.Namespace || others[0].Name != ist.Name) {
		return fmt.Sprintf("Istio %s/%s already manages the control plane of this cluster; delete one of the two Istio resources",
			others[0].Namespace, others[0].Name), nil
	}

	dep := &appsv1.Deployment{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ist.Namespace, Name: "istiod"}, dep)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("get Deployment %s/istiod: %w", ist.Namespace, err)
	}
	l := dep.Labels
	if l[render.LabelManagedBy] != render.ManagedByValue ||
		l[render.LabelOwnerName] != ist.Name || l[render.LabelOwnerNamespace] != ist.Namespace {
		by := l["app.kubernetes.io/managed-by"]
		if by == "" {
			by = "another tool"
		}
		return fmt.Sprintf("Deployment %s/istiod exists and is managed by %s, not by this Istio resource; uninstall that control plane (istioctl uninstall --purge, or helm uninstall) first",
			ist.Namespace, by), nil
	}
	return "", nil
}
