package meshingress

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/ingress"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
	"github.com/meshfleet/meshfleet/pkg/operator/internal/reconciler"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// FieldManager owns the fields the controller applies.
const FieldManager = "meshfleet-ingress"

// Finalizer holds a MeshIngress until its objects are deleted (they live in
// another namespace, so no owner reference can collect them).
const Finalizer = "meshfleet.io/mesh-ingress"

// ConditionReady is true when the rendered objects are applied.
const ConditionReady = "Ready"

// Kinds are the kinds Render makes, pruned when no longer rendered.
var Kinds = []schema.GroupVersionKind{
	{Group: "networking.istio.io", Version: "v1", Kind: "Gateway"},
	{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
	{Group: "networking.istio.io", Version: "v1", Kind: "DestinationRule"},
}

// Reconciler applies MeshIngresses.
type Reconciler struct {
	// Client reads MeshIngress, Istio and RemoteIstio (cached) and writes status.
	Client client.Client
	// Direct reads and writes the rendered Istio objects without a cache.
	Direct client.Client
	// Resync is how often a Ready MeshIngress is applied again (drift).
	Resync time.Duration
}

// +kubebuilder:rbac:groups=meshfleet.io,resources=meshingresses,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=meshfleet.io,resources=meshingresses/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=meshfleet.io,resources=meshingresses/finalizers,verbs=update

// Reconcile renders and applies one MeshIngress.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return reconciler.Steps[*v1beta1.MeshIngress]{
		Kind: "MeshIngress", Client: r.Client, Finalizer: Finalizer,
		New: func() *v1beta1.MeshIngress { return &v1beta1.MeshIngress{} },
		Run: r.applyObjects, Finalize: r.deleteObjects, WriteStatus: r.writeStatus,
	}.Reconcile(ctx, req)
}

// applier applies and prunes the objects of mi.
func (r *Reconciler) applier(mi *v1beta1.MeshIngress) (*apply.Applier, labels.Set) {
	return &apply.Applier{Client: r.Direct, FieldManager: FieldManager, OwnerUID: mi.UID},
		labels.Set{ingress.LabelManagedBy: ingress.ManagedBy, ingress.LabelIngress: mi.Name}
}

// deleteObjects deletes the objects of a MeshIngress being deleted.
func (r *Reconciler) deleteObjects(ctx context.Context, mi *v1beta1.MeshIngress) (bool, ctrl.Result, error) {
	ap, owner := r.applier(mi)
	if _, err := ap.Prune(ctx, owner, Kinds, nil); err != nil {
		return false, ctrl.Result{}, fmt.Errorf("deleting the objects of MeshIngress %s/%s: %w", mi.Namespace, mi.Name, err)
	}
	return true, ctrl.Result{}, nil
}

// applyObjects renders the MeshIngress, applies its objects and prunes those no
// longer rendered, and records the outcome in its Ready condition.
func (r *Reconciler) applyObjects(ctx context.Context, mi *v1beta1.MeshIngress) (ctrl.Result, error) {
	req := client.ObjectKeyFromObject(mi)
	ap, owner := r.applier(mi)
	clusters, err := r.clusters(ctx, mi.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	objs, err := ingress.Render(mi, clusters, "")
	if err != nil {
		ready(mi, metav1.ConditionFalse, v1beta1.ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Direct.Get(ctx, client.ObjectKey{Name: render.GatewayNamespace}, ns); apierrors.IsNotFound(err) {
		ready(mi, metav1.ConditionFalse, v1beta1.ReasonNoControlPlane,
			fmt.Sprintf("namespace %s does not exist in this cluster: create an Istio resource here (the operator installs the gateways there)", render.GatewayNamespace))
		return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("reading namespace %s: %w", render.GatewayNamespace, err)
	}
	us, err := Unstructured(objs)
	if err != nil {
		return ctrl.Result{}, err
	}
	_, err = ap.Apply(ctx, us)
	var conflict *apply.ConflictError
	if errors.As(err, &conflict) {
		ready(mi, metav1.ConditionFalse, v1beta1.ReasonConflict, err.Error())
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("applying MeshIngress %s: %w", req, err)
	}
	keep := map[string]bool{}
	for _, u := range us {
		keep[apply.Key(u)] = true
	}
	if _, err := ap.Prune(ctx, owner, Kinds, keep); err != nil {
		return ctrl.Result{}, fmt.Errorf("pruning MeshIngress %s: %w", req, err)
	}
	ready(mi, metav1.ConditionTrue, "Applied", fmt.Sprintf("%d objects applied in %s", len(us), render.GatewayNamespace))
	return ctrl.Result{RequeueAfter: r.Resync}, nil
}

// clusters lists the mesh's clusters in ns: the Istio resources' cluster
// names and the RemoteIstios' (each spec.clusterName, else its name).
func (r *Reconciler) clusters(ctx context.Context, ns string) ([]string, error) {
	var out []string
	ists := &v1beta1.IstioList{}
	if err := r.Client.List(ctx, ists, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing Istio resources in %s: %w", ns, err)
	}
	for _, i := range ists.Items {
		if i.Spec.ClusterName != "" {
			out = append(out, i.Spec.ClusterName)
		}
	}
	ris := &v1beta1.RemoteIstioList{}
	if err := r.Client.List(ctx, ris, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing RemoteIstio resources in %s: %w", ns, err)
	}
	for _, ri := range ris.Items {
		name := ri.Spec.ClusterName
		if name == "" {
			name = ri.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

// ready records the outcome of this generation in the Ready condition.
func ready(mi *v1beta1.MeshIngress, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&mi.Status.Conditions, metav1.Condition{
		Type: ConditionReady, Status: s, Reason: reason, Message: msg, ObservedGeneration: mi.Generation})
}

// writeStatus writes the status when it changed. The generation counts as
// observed once the Ready condition speaks of it: a reconcile that failed
// before it got that far leaves the status as it was.
func (r *Reconciler) writeStatus(ctx context.Context, mi, before *v1beta1.MeshIngress) (bool, error) {
	if c := meta.FindStatusCondition(mi.Status.Conditions, ConditionReady); c != nil && c.ObservedGeneration == mi.Generation {
		mi.Status.ObservedGeneration = mi.Generation
	}
	return conditions.WriteStatus(ctx, r.Client, nil, mi, conditions.Change{Before: &before.Status, After: &mi.Status})
}

// Unstructured converts the rendered objects for pkg/apply.
func Unstructured(o *ingress.Objects) ([]*unstructured.Unstructured, error) {
	var in []runtime.Object
	var kinds []string
	for _, g := range o.Gateways {
		in, kinds = append(in, g), append(kinds, "Gateway")
	}
	in, kinds = append(in, o.VirtualService), append(kinds, "VirtualService")
	for _, d := range o.DestinationRules {
		in, kinds = append(in, d), append(kinds, "DestinationRule")
	}
	out := make([]*unstructured.Unstructured, 0, len(in))
	for i, obj := range in {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("converting %s: %w", kinds[i], err)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetAPIVersion("networking.istio.io/v1")
		u.SetKind(kinds[i])
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		out = append(out, u)
	}
	return out, nil
}

// SetupWithManager watches MeshIngresses, and Istio and RemoteIstio
// resources (the default entry clusters).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &v1beta1.MeshIngressList{}
		if err := r.Client.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for _, mi := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&mi)})
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("meshingress").
		For(&v1beta1.MeshIngress{}).
		Watches(&v1beta1.RemoteIstio{}, all).
		Watches(&v1beta1.Istio{}, all).
		Complete(r)
}
