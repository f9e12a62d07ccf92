package istio

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
	"github.com/meshfleet/meshfleet/pkg/operator/internal/reconciler"
	"github.com/meshfleet/meshfleet/pkg/operator/rollout"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// Finalizer holds an Istio resource until its control plane is uninstalled.
const Finalizer = "meshfleet.io/uninstall"

// Reconciler installs and maintains the control plane an Istio resource describes.
type Reconciler struct {
	// Client reads from the manager's cache (objects labelled managed-by=meshfleet
	// and Istio resources) and writes to the API server.
	Client client.Client
	// APIReader reads objects the cache does not hold (namespaces, user Secrets,
	// foreign installs) straight from the API server.
	APIReader client.Reader
	// Discovery tells the server's Kubernetes version.
	Discovery discovery.ServerVersionInterfaceWithContext
	// Events records what the operator did to each Istio resource.
	Events events.EventRecorder
	// Resync is how often a Ready control plane is checked again for drift in
	// kinds the operator does not watch, and for certificates nearing renewal.
	Resync time.Duration
	// LocalityServer is how the locality server is run when an Istio
	// resource enables locality routing (the operator's image and tunnel).
	LocalityServer render.LocalityServer
	// TunnelServer, when set, runs the tunnel server with each control
	// plane (the operator's image); nil when the mesh does not use the
	// tunnel or the tunnel server is installed otherwise.
	TunnelServer *render.TunnelServer
	// IstiodDebug is how the fleet rollout's xDS gate reaches each istiod
	// revision's sync state.
	IstiodDebug IstiodDebug
	// Now is the clock; tests set it.
	Now func() time.Time

	// renders spares the charts' render when a reconcile's ControlPlane is
	// the one last rendered: most reconciles follow a RemoteIstio's change
	// of phase, which changes only the status (decision 70).
	renders render.Memo
	// crds spares the check of Istio's CRDs when neither they nor the
	// manifest changed since they were last found applied and established.
	crds crdCheck
}

// +kubebuilder:rbac:groups=meshfleet.io,resources=istios,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=meshfleet.io,resources=istios/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=meshfleet.io,resources=istios/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;patch;create;delete
// +kubebuilder:rbac:groups="",resources=configmaps;secrets;serviceaccounts;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings;clusterroles;clusterrolebindings,verbs=get;list;watch;create;update;patch;delete;bind;escalate
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=networking.istio.io;security.istio.io,resources=*,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch;create;update;patch;delete

// Reconcile moves one Istio resource's control plane one step closer to its
// spec. It is level-triggered and idempotent: it reads the whole desired and
// live state each time, and writes only what differs.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return reconciler.Steps[*v1beta1.Istio]{
		Kind: "Istio", Client: r.Client, Finalizer: Finalizer,
		New: func() *v1beta1.Istio { return &v1beta1.Istio{} },
		Run: r.install, Finalize: r.uninstall,
		WriteStatus: func(ctx context.Context, ist, before *v1beta1.Istio) (bool, error) {
			return r.writeStatus(ctx, ist, &before.Status)
		},
	}.Reconcile(ctx, req)
}

// install runs the install steps in order and records each as a condition.
// A step that is not done stops the steps after it.
func (r *Reconciler) install(ctx context.Context, ist *v1beta1.Istio) (ctrl.Result, error) {
	s := newStatus(ist)

	cp, out := r.preCheck(ctx, ist)
	if !s.Record(v1beta1.ConditionPreCheckPassed, out) {
		return out.Result(), out.Err
	}
	ist.Status.ClusterName = cp.ClusterName
	ls := r.LocalityServer
	cp.LocalityServer = &ls
	cp.TunnelServer = r.TunnelServer
	remotePods, err := r.members(ctx, ist, cp)
	if err != nil {
		return ctrl.Result{}, err
	}

	var manifest *render.Manifest
	var revRequeue time.Duration
	if revisionBased(ist) {
		manifest, revRequeue, err = r.renderRevisions(ctx, ist, cp, remotePods)
	} else {
		ist.Status.Revisions = nil
		manifest, err = r.renders.Render(cp)
	}
	if err != nil {
		// The charts are embedded, so this is a bug, not the user's doing.
		out := failed(v1beta1.ReasonInvalidSpec, fmt.Sprintf("rendering the control plane failed: %v; this is a meshfleet bug, please report it with the Istio resource attached", err))
		s.Record(v1beta1.ConditionResourceDefinitionsCreated, out)
		return out.Result(), nil
	}

	certs, out := r.definitions(ctx, ist, cp, manifest)
	if !s.Record(v1beta1.ConditionResourceDefinitionsCreated, out) {
		return out.Result(), out.Err
	}

	out = r.deploy(ctx, ist, cp, manifest, certs)
	if !s.Record(v1beta1.ConditionControlPlaneDeployed, out) {
		return out.Result(), out.Err
	}

	out = rollout.Status(ctx, r.Client, manifest.Objects)
	s.Record(v1beta1.ConditionReady, out)
	if out.Done {
		ist.Status.Version = cp.Version
		ist.Status.ChartVersion = cp.ChartVersion
	}
	next := r.Resync
	if certs != nil && certs.RenewAt.After(r.now()) {
		if d := certs.RenewAt.Sub(r.now()); d < next {
			next = d
		}
	}
	if out.Requeue > 0 && out.Requeue < next {
		next = out.Requeue
	}
	if revRequeue > 0 && revRequeue < next {
		next = revRequeue
	}
	return ctrl.Result{RequeueAfter: next}, out.Err
}

// writeStatus writes the status only when it changed, so a steady-state
// reconcile makes no API writes. It reports a write conflict (a stale copy)
// separately, so that the caller can look again.
func (r *Reconciler) writeStatus(ctx context.Context, ist *v1beta1.Istio, before *v1beta1.IstioStatus) (conflict bool, err error) {
	ist.Status.ObservedGeneration = ist.Generation
	ist.Status.Phase = conditions.Phase(ist.Status.Conditions, stepOrder, ist.DeletionTimestamp != nil)
	return conditions.WriteStatus(ctx, r.Client, r.Events, ist, conditions.Change{
		Before: before, After: &ist.Status, From: before.Phase, To: ist.Status.Phase,
		Summary: conditions.Summary(ist.Status.Conditions, stepOrder),
	})
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager registers the reconciler: it watches Istio resources, and
// every kind it renders through the owner labels, so that a managed object
// that is edited or deleted is repaired at once.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("istio").
		For(&v1beta1.Istio{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Watches(&v1beta1.RemoteIstio{}, handler.EnqueueRequestsFromMapFunc(r.istiosOf))
	for _, gvk := range render.WatchedKinds {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		b = b.Watches(u, handler.EnqueueRequestsFromMapFunc(ownerOf))
	}
	return b.Complete(r)
}

// members lists the remote clusters joined to this control plane, by
// RemoteIstio name: in the status, and in the ControlPlane for meshNetworks. It returns the pods each
// remote counts per revision (its RemoteIstio's status.revisions), by
// cluster name.
func (r *Reconciler) members(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane) (map[string]map[string]int, error) {
	var list v1beta1.RemoteIstioList
	if err := r.Client.List(ctx, &list, client.InNamespace(ist.Namespace)); err != nil {
		return nil, fmt.Errorf("list RemoteIstio resources in %s: %w", ist.Namespace, err)
	}
	// The cache lists in no set order (an index is a set), and the members'
	// order reaches meshNetworks, status.members and the render's input:
	// taken as listed, each reconcile could see another order, rewrite the
	// status and render again for nothing (decision 70).
	slices.SortFunc(list.Items, func(a, b v1beta1.RemoteIstio) int { return strings.Compare(a.Name, b.Name) })
	pods := map[string]map[string]int{}
	ist.Status.Members = nil
	for i := range list.Items {
		ri := &list.Items[i]
		if ri.Spec.IstioRef != "" && ri.Spec.IstioRef != ist.Name || !ri.DeletionTimestamp.IsZero() {
			continue
		}
		remote, errs := render.FromRemoteIstio(ri, cp)
		if len(errs) > 0 {
			continue // its own status says what is wrong
		}
		m := render.Member{ClusterName: remote.ClusterName, Network: remote.Network}
		if ref := ri.Spec.KubeconfigSecretRef; ref != nil {
			m.KubeconfigSecret = ref.Name
		}
		cp.Members = append(cp.Members, m)
		ist.Status.Members = append(ist.Status.Members, v1beta1.MemberStatus{
			Name: ri.Name, ClusterName: remote.ClusterName, Network: remote.Network,
			Phase: ri.Status.Phase, Connection: ri.Status.Connection,
		})
		if len(ri.Status.Revisions) > 0 {
			n := map[string]int{}
			for _, rv := range ri.Status.Revisions {
				n[rv.Name] = int(rv.Pods)
			}
			pods[remote.ClusterName] = n
		}
	}
	return pods, nil
}

// istiosOf maps a RemoteIstio to the Istio resources it may join.
func (r *Reconciler) istiosOf(ctx context.Context, o client.Object) []reconcile.Request {
	ri, ok := o.(*v1beta1.RemoteIstio)
	if !ok {
		return nil
	}
	if ri.Spec.IstioRef != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ri.Namespace, Name: ri.Spec.IstioRef}}}
	}
	var list v1beta1.IstioList
	if err := r.Client.List(ctx, &list, client.InNamespace(ri.Namespace)); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, ist := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ist.Namespace, Name: ist.Name}})
	}
	return reqs
}

// ownerOf maps a managed object to the Istio resource named in its labels.
func ownerOf(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[render.LabelOwnerKind] != "Istio" || l[render.LabelOwnerName] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{
		Namespace: l[render.LabelOwnerNamespace], Name: l[render.LabelOwnerName]}}}
}

func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}
