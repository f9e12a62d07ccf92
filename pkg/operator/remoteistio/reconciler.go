package remoteistio

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
	"github.com/meshfleet/meshfleet/pkg/operator/internal/reconciler"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/revisions"
)

// Finalizer holds a RemoteIstio until the remote cluster is cleaned up.
const Finalizer = "meshfleet.io/leave"

// steps are the install steps of a remote cluster, one condition each.
var steps = []string{
	v1beta1.ConditionConnected,
	v1beta1.ConditionCertificatesIssued,
	v1beta1.ConditionInstalled,
	v1beta1.ConditionReady,
}

// Reconciler joins remote clusters to the mesh of an Istio control plane.
type Reconciler struct {
	// Client reads the primary through the manager's cache and writes to it.
	Client client.Client
	// APIReader reads the primary uncached (user Secrets).
	APIReader client.Reader
	// Scheme types the remote clients.
	Scheme *runtime.Scheme
	// PrimaryConfig are the operator's credentials, reused for the tunnel.
	PrimaryConfig *rest.Config
	// Tunnel, when set, reaches clusters that have no kubeconfig Secret.
	Tunnel *Tunnel
	// Events records what the operator did to each RemoteIstio.
	Events events.EventRecorder
	// Resync is how often a remote cluster is checked again for drift (its
	// objects are not watched) and for certificates and tokens to renew.
	Resync time.Duration
	// AgentCertTTL is the lifetime of the agents' certificates;
	// meshca.AgentCertTTL if zero.
	AgentCertTTL time.Duration
	// AgentImage, when set, is the image tunnel agents must run (the
	// operator's own): an agent Deployment running another one is updated
	// through the tunnel.
	AgentImage string
	// Now is the clock; tests set it.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=meshfleet.io,resources=remoteistios,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=meshfleet.io,resources=remoteistios/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=meshfleet.io,resources=remoteistios/finalizers,verbs=update

// Reconcile brings one remote cluster to the state its RemoteIstio describes.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return reconciler.Steps[*v1beta1.RemoteIstio]{
		Kind: "RemoteIstio", Client: r.Client, Finalizer: Finalizer,
		New: func() *v1beta1.RemoteIstio { return &v1beta1.RemoteIstio{} },
		Run: r.join, Finalize: r.leave,
		WriteStatus: func(ctx context.Context, ri, before *v1beta1.RemoteIstio) (bool, error) {
			return r.writeStatus(ctx, ri, &before.Status)
		},
	}.Reconcile(ctx, req)
}

func (r *Reconciler) recorder(ri *v1beta1.RemoteIstio) conditions.Recorder {
	return conditions.Recorder{Conditions: &ri.Status.Conditions, Generation: ri.Generation, Steps: steps,
		Before: append([]metav1.Condition(nil), ri.Status.Conditions...)}
}

// join runs the steps in order; a step that is not done stops the others.
func (r *Reconciler) join(ctx context.Context, ri *v1beta1.RemoteIstio) (ctrl.Result, error) {
	rec := r.recorder(ri)
	primary, cp, out := r.resolve(ctx, ri)
	if !rec.Record(v1beta1.ConditionConnected, out) {
		return out.Result(), out.Err
	}
	ri.Status.ClusterName = cp.ClusterName

	var agentRenew time.Time
	if r.tunnelled(ri) {
		// Before the agent connects: the joining admin installs it with this certificate.
		agentRenew, out = r.agentBootstrap(ctx, cp)
		if !rec.Record(v1beta1.ConditionConnected, out) {
			return out.Result(), out.Err
		}
	}

	rem, out := r.connect(ctx, ri, cp.ClusterName)
	if !rec.Record(v1beta1.ConditionConnected, out) {
		return out.Result(), out.Err
	}
	ri.Status.Connection, ri.Status.KubernetesVersion = rem.connection, rem.version
	if ri.Status.ClusterUID == "" {
		ri.Status.ClusterUID = rem.uid
	}

	certs, out := r.certificates(ctx, primary, cp, rem)
	if certs != nil {
		ri.Status.Certificates = meshca.Status(cp, nil, certs, nil)
	}
	if out.Done && rem.connection == v1beta1.ConnectionTunnel {
		agent, aout := r.renewAgent(ctx, cp, rem)
		if !aout.Done {
			out = aout
		} else {
			out.Message += fmt.Sprintf("; tunnel agent certificate valid until %s, renewed from %s", agent.NotAfter.UTC().Format(time.RFC3339), agent.RenewAt.UTC().Format(time.RFC3339))
			if agentRenew.IsZero() || agent.RenewAt.Before(agentRenew) {
				agentRenew = agent.RenewAt
			}
			from, err := r.followAgentImage(ctx, rem)
			switch {
			case err != nil:
				out = remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "updating the tunnel agent's version", err)
			case from != "":
				r.Events.Eventf(ri, nil, "Normal", "AgentUpgraded", "UpgradeAgent", "tunnel agents of cluster %s moved from image %s to %s", cp.ClusterName, from, r.AgentImage)
			}
		}
	}
	if !record(rec, v1beta1.ConditionCertificatesIssued, out) {
		return out.Result(), out.Err
	}

	manifest, renew, out := r.install(ctx, ri, cp, rem, certs)
	if !record(rec, v1beta1.ConditionInstalled, out) {
		return out.Result(), out.Err
	}
	ri.Status.DefaultTagRevision = defaultTagOf(cp.Remote.Revisions)

	if len(cp.Remote.Revisions) > 0 {
		counts, err := r.countPods(ctx, rem)
		if err != nil {
			out = remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "counting pods per revision", err)
			record(rec, v1beta1.ConditionReady, out)
			return out.Result(), out.Err
		}
		ri.Status.Revisions = counts
	} else {
		ri.Status.Revisions = nil
	}

	out = r.readiness(ctx, cp, rem, manifest)
	record(rec, v1beta1.ConditionReady, out)
	if out.Done {
		ri.Status.ChartVersion = cp.ChartVersion
	}
	next := r.Resync
	for _, t := range []time.Time{certs.RenewAt, renew, agentRenew} {
		if d := t.Sub(r.now()); d > 0 && d < next {
			next = d
		}
	}
	if out.Requeue > 0 && out.Requeue < next {
		next = out.Requeue
	}
	if len(cp.Remote.Revisions) > 1 && podRecheck < next {
		// An old revision waits for this cluster's pods: count them again.
		next = podRecheck
	}
	return ctrl.Result{RequeueAfter: next}, out.Err
}

// defaultTagOf is the revision that carries the default tag, "" when none.
func defaultTagOf(revs []render.InstalledRevision) string {
	for _, rv := range revs {
		if slices.Contains(rv.Tags, render.DefaultTag) {
			return rv.Name
		}
	}
	return ""
}

// podRecheck is how often the remote's pods are counted again while the
// primary keeps an old revision (pods are not watched in remotes).
const podRecheck = 5 * time.Second

// countPods counts the remote's pods per revision (or tag) they use.
func (r *Reconciler) countPods(ctx context.Context, rem *remote) ([]v1beta1.RevisionPods, error) {
	var pods corev1.PodList
	if err := rem.client.List(ctx, &pods); err != nil {
		return nil, err
	}
	counts := revisions.Count(pods.Items)
	out := make([]v1beta1.RevisionPods, 0, len(counts))
	for name, n := range counts {
		out = append(out, v1beta1.RevisionPods{Name: name, Pods: int32(n)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// record records a step's outcome. A step that failed because the cluster
// stopped answering is an outage, not that step's failure: it is recorded on
// Connected, and the step keeps its last known status with the others.
func record(rec conditions.Recorder, step string, out conditions.Outcome) bool {
	if !out.Done && out.Reason == v1beta1.ReasonUnreachable {
		return rec.Record(v1beta1.ConditionConnected, out)
	}
	return rec.Record(step, out)
}

// resolve finds the Istio resource the remote joins and resolves both.
func (r *Reconciler) resolve(ctx context.Context, ri *v1beta1.RemoteIstio) (*render.ControlPlane, *render.ControlPlane, conditions.Outcome) {
	ist, msg, err := r.primaryOf(ctx, ri)
	if err != nil {
		return nil, nil, conditions.Transient(v1beta1.ReasonNoControlPlane, err.Error(), err)
	}
	if ist == nil {
		return nil, nil, conditions.Waiting(v1beta1.ReasonNoControlPlane, msg, 30*time.Second)
	}
	primary, errs := render.FromIstio(ist)
	if len(errs) > 0 {
		return nil, nil, conditions.Failed(v1beta1.ReasonNoControlPlane, fmt.Sprintf(
			"Istio %s/%s has an invalid spec (%v); fix it first", ist.Namespace, ist.Name, errs.ToAggregate()))
	}
	cp, errs := render.FromRemoteIstio(ri, primary)
	if len(errs) > 0 {
		return nil, nil, conditions.Failed(v1beta1.ReasonInvalidSpec, "fix the spec: "+errs.ToAggregate().Error())
	}
	if s := ist.Spec.UpdateStrategy; s != nil && s.Type == v1beta1.UpdateStrategyRevisionBased {
		cp.Remote.Revisions = render.RevisionsFor(ist, cp.ClusterName)
	}
	return primary, cp, conditions.Succeeded("")
}

// primaryOf returns the Istio resource named by spec.istioRef, or the only
// one in the namespace; nil with a message when there is none to join.
func (r *Reconciler) primaryOf(ctx context.Context, ri *v1beta1.RemoteIstio) (*v1beta1.Istio, string, error) {
	if ref := ri.Spec.IstioRef; ref != "" {
		ist := &v1beta1.Istio{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: ri.Namespace, Name: ref}, ist)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("spec.istioRef: Istio %s/%s not found; create it, or name an existing one", ri.Namespace, ref), nil
		}
		return ist, "", err
	}
	var list v1beta1.IstioList
	if err := r.Client.List(ctx, &list, client.InNamespace(ri.Namespace)); err != nil {
		return nil, "", fmt.Errorf("list Istio resources in %s: %w", ri.Namespace, err)
	}
	switch len(list.Items) {
	case 0:
		return nil, fmt.Sprintf("no Istio resource in namespace %s to join; create the primary's Istio resource there first", ri.Namespace), nil
	case 1:
		return &list.Items[0], "", nil
	}
	return nil, fmt.Sprintf("namespace %s holds %d Istio resources; set spec.istioRef to the one to join", ri.Namespace, len(list.Items)), nil
}

// writeStatus writes the status when it changed, and reports a conflict.
func (r *Reconciler) writeStatus(ctx context.Context, ri *v1beta1.RemoteIstio, before *v1beta1.RemoteIstioStatus) (bool, error) {
	ri.Status.ObservedGeneration = ri.Generation
	conditions.KeepTransitionTimes(before.Conditions, ri.Status.Conditions)
	ri.Status.Phase = conditions.Phase(ri.Status.Conditions, steps, ri.DeletionTimestamp != nil)
	return conditions.WriteStatus(ctx, r.Client, r.Events, ri, conditions.Change{
		Before: before, After: &ri.Status, From: before.Phase, To: ri.Status.Phase,
		Summary: conditions.Summary(ri.Status.Conditions, steps),
	})
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager registers the controller. A change of an Istio resource
// (its spec, its certificates) reconciles the RemoteIstios of its namespace;
// a change of a remote secret reconciles its owner.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("remoteistio").
		// Joins talk to different clusters: one slow cluster must not hold up the others.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		For(&v1beta1.RemoteIstio{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&v1beta1.Istio{}, handler.EnqueueRequestsFromMapFunc(r.remotesOf), builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, revisionsChanged()))).
		Complete(r)
}

// remotesOf maps an Istio resource to the RemoteIstios of its namespace.
func (r *Reconciler) remotesOf(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1beta1.RemoteIstioList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, ri := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ri.Namespace, Name: ri.Name}})
	}
	return reqs
}

// revisionsChanged passes an Istio update that changes what a remote
// renders of its revisions: render.RevisionsFor of every cluster a fleet
// rollout batch names (where the rollout may place the default tag), and of
// any other cluster (status.revisions alone). Keying on the render's input
// itself, not on a summary of it, leaves no change a remote must follow
// filtered out.
func revisionsChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc:  func(e event.UpdateEvent) bool { return remoteRenderKey(e.ObjectOld) != remoteRenderKey(e.ObjectNew) },
	}
}

// remoteRenderKey sums up the revisions every remote renders from o.
func remoteRenderKey(o client.Object) string {
	ist, ok := o.(*v1beta1.Istio)
	if !ok {
		return ""
	}
	var b strings.Builder
	write := func(cluster string) {
		fmt.Fprintf(&b, "%s:", cluster)
		for _, rv := range render.RevisionsFor(ist, cluster) {
			fmt.Fprintf(&b, "%s=%s%v;", rv.Name, rv.Version, rv.Tags)
		}
		b.WriteString("\n")
	}
	write("") // a cluster in no batch
	if st := ist.Status.Rollout; st != nil {
		for _, bt := range st.Batches {
			for _, c := range bt.Clusters {
				write(c)
			}
		}
	}
	return b.String()
}
