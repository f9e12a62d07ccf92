package reconciler

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
)

const finalizer = "meshfleet.io/test"

var key = types.NamespacedName{Namespace: "istio-system", Name: "istio"}

// harness is a Steps over a fake API server that counts what the skeleton
// did: status writes, step runs and finalize calls.
type harness struct {
	c            client.Client
	statusWrites int
	runs         int
	finalizes    int
	// run is the step; it records Ready True by default.
	run func(context.Context, *v1beta1.Istio) (ctrl.Result, error)
	// finalize is the clean-up; done at once by default.
	finalize func(context.Context, *v1beta1.Istio) (bool, ctrl.Result, error)
	// statusErr, when set, is what every status write returns.
	statusErr error
}

func newHarness(t *testing.T, objs ...client.Object) *harness {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1beta1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	h := &harness{
		run: func(_ context.Context, ist *v1beta1.Istio) (ctrl.Result, error) {
			setReady(ist, metav1.ConditionTrue, v1beta1.ReasonSucceeded)
			return ctrl.Result{RequeueAfter: time.Minute}, nil
		},
		finalize: func(context.Context, *v1beta1.Istio) (bool, ctrl.Result, error) {
			return true, ctrl.Result{}, nil
		},
	}
	h.c = fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&v1beta1.Istio{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				h.statusWrites++
				if h.statusErr != nil {
					return h.statusErr
				}
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
		}).Build()
	return h
}

func (h *harness) steps() Steps[*v1beta1.Istio] {
	return Steps[*v1beta1.Istio]{
		Kind: "Istio", Client: h.c, Finalizer: finalizer,
		New: func() *v1beta1.Istio { return &v1beta1.Istio{} },
		Run: func(ctx context.Context, ist *v1beta1.Istio) (ctrl.Result, error) {
			h.runs++
			return h.run(ctx, ist)
		},
		Finalize: func(ctx context.Context, ist *v1beta1.Istio) (bool, ctrl.Result, error) {
			h.finalizes++
			return h.finalize(ctx, ist)
		},
		WriteStatus: func(ctx context.Context, ist, before *v1beta1.Istio) (bool, error) {
			return conditions.WriteStatus(ctx, h.c, nil, ist, conditions.Change{Before: &before.Status, After: &ist.Status})
		},
	}
}

func (h *harness) reconcile(t *testing.T) (ctrl.Result, error) {
	t.Helper()
	return h.steps().Reconcile(t.Context(), ctrl.Request{NamespacedName: key})
}

func (h *harness) get(t *testing.T) *v1beta1.Istio {
	t.Helper()
	ist := &v1beta1.Istio{}
	if err := h.c.Get(t.Context(), key, ist); err != nil {
		t.Fatal(err)
	}
	return ist
}

func setReady(ist *v1beta1.Istio, s metav1.ConditionStatus, reason string) {
	meta.SetStatusCondition(&ist.Status.Conditions, metav1.Condition{Type: v1beta1.ConditionReady, Status: s, Reason: reason, Message: reason})
}

func istio(finalizers ...string) *v1beta1.Istio {
	return &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Finalizers: finalizers}}
}

func TestNotFound(t *testing.T) {
	h := newHarness(t)
	res, err := h.reconcile(t)
	if err != nil || res != (ctrl.Result{}) {
		t.Fatalf("a resource that is gone: %+v, %v; want nothing to do", res, err)
	}
	if h.runs+h.finalizes+h.statusWrites != 0 {
		t.Errorf("runs %d, finalizes %d, status writes %d; want none", h.runs, h.finalizes, h.statusWrites)
	}
}

func TestReadErrorIsReturned(t *testing.T) {
	h := newHarness(t, istio())
	h.c = interceptor.NewClient(h.c.(client.WithWatch), interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return apierrors.NewServiceUnavailable("etcd is down")
		},
	})
	if _, err := h.reconcile(t); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("error %v, want the read's error", err)
	}
	if h.runs != 0 {
		t.Errorf("the steps ran %d times without the resource", h.runs)
	}
}

func TestFinalizerAddedThenSteps(t *testing.T) {
	h := newHarness(t, istio())
	res, err := h.reconcile(t)
	if err != nil || res.RequeueAfter != time.Minute {
		t.Fatalf("reconcile: %+v, %v; want the steps' result", res, err)
	}
	ist := h.get(t)
	if len(ist.Finalizers) != 1 || ist.Finalizers[0] != finalizer {
		t.Errorf("finalizers %v, want [%s]", ist.Finalizers, finalizer)
	}
	if c := meta.FindStatusCondition(ist.Status.Conditions, v1beta1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v, want the steps' status written", c)
	}
	if h.runs != 1 || h.statusWrites != 1 {
		t.Errorf("runs %d, status writes %d; want 1 and 1", h.runs, h.statusWrites)
	}
}

func TestUnchangedStatusIsNotWritten(t *testing.T) {
	h := newHarness(t, istio(finalizer))
	if _, err := h.reconcile(t); err != nil {
		t.Fatal(err)
	}
	rv := h.get(t).ResourceVersion
	for range 3 {
		if _, err := h.reconcile(t); err != nil {
			t.Fatal(err)
		}
	}
	if h.runs != 4 || h.statusWrites != 1 {
		t.Errorf("runs %d, status writes %d; want 4 runs and only the first one written", h.runs, h.statusWrites)
	}
	if got := h.get(t).ResourceVersion; got != rv {
		t.Errorf("resource version %s, then %s: a steady-state reconcile wrote", rv, got)
	}
}

func TestStatusConflictRequeues(t *testing.T) {
	h := newHarness(t, istio(finalizer))
	h.statusErr = apierrors.NewConflict(schema.GroupResource{Group: "meshfleet.io", Resource: "istios"}, key.Name, errors.New("the object has been modified"))
	res, err := h.reconcile(t)
	if err != nil || res.RequeueAfter != ConflictRetry {
		t.Fatalf("reconcile after a status conflict: %+v, %v; want a requeue after %s and no error", res, err, ConflictRetry)
	}
	if h.statusWrites != 1 {
		t.Errorf("status writes %d, want 1", h.statusWrites)
	}
}

func TestStatusWriteErrorIsReturned(t *testing.T) {
	h := newHarness(t, istio(finalizer))
	h.statusErr = apierrors.NewServiceUnavailable("etcd is down")
	if _, err := h.reconcile(t); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("error %v, want the status write's error", err)
	}
}

func TestStepErrorStillWritesStatus(t *testing.T) {
	h := newHarness(t, istio(finalizer))
	stepErr := errors.New("apply failed")
	h.run = func(_ context.Context, ist *v1beta1.Istio) (ctrl.Result, error) {
		setReady(ist, metav1.ConditionFalse, v1beta1.ReasonApplyFailed)
		return ctrl.Result{RequeueAfter: time.Minute}, stepErr
	}
	res, err := h.reconcile(t)
	if !errors.Is(err, stepErr) || res != (ctrl.Result{}) {
		t.Fatalf("reconcile: %+v, %v; want the step's error alone (the controller backs off)", res, err)
	}
	if c := meta.FindStatusCondition(h.get(t).Status.Conditions, v1beta1.ConditionReady); c == nil || c.Reason != v1beta1.ReasonApplyFailed {
		t.Errorf("Ready = %+v, want the failed step recorded", c)
	}

	// The step's error wins over a status write's.
	h.statusErr = apierrors.NewServiceUnavailable("etcd is down")
	h.run = func(_ context.Context, ist *v1beta1.Istio) (ctrl.Result, error) {
		setReady(ist, metav1.ConditionFalse, v1beta1.ReasonRollingOut)
		return ctrl.Result{}, stepErr
	}
	if _, err := h.reconcile(t); !errors.Is(err, stepErr) {
		t.Fatalf("error %v, want the step's", err)
	}
}

func deleting(t *testing.T, h *harness) {
	t.Helper()
	if err := h.c.Delete(t.Context(), h.get(t)); err != nil {
		t.Fatal(err)
	}
}

func TestDeletionFinalizes(t *testing.T) {
	h := newHarness(t, istio(finalizer, "someone-else"))
	deleting(t, h)
	res, err := h.reconcile(t)
	if err != nil || res != (ctrl.Result{}) {
		t.Fatalf("reconcile: %+v, %v", res, err)
	}
	if h.finalizes != 1 || h.runs != 0 {
		t.Errorf("finalizes %d, runs %d; want 1 and 0", h.finalizes, h.runs)
	}
	if got := h.get(t).Finalizers; len(got) != 1 || got[0] != "someone-else" {
		t.Errorf("finalizers %v, want only the other one left", got)
	}

	// Ours is gone: nothing more to do.
	if _, err := h.reconcile(t); err != nil {
		t.Fatal(err)
	}
	if h.finalizes != 1 {
		t.Errorf("finalized %d times, want once", h.finalizes)
	}
}

func TestDeletionWaitsForFinalize(t *testing.T) {
	h := newHarness(t, istio(finalizer))
	deleting(t, h)
	h.finalize = func(context.Context, *v1beta1.Istio) (bool, ctrl.Result, error) {
		return false, ctrl.Result{RequeueAfter: time.Second}, nil
	}
	res, err := h.reconcile(t)
	if err != nil || res.RequeueAfter != time.Second {
		t.Fatalf("reconcile: %+v, %v; want Finalize's result", res, err)
	}
	if got := h.get(t).Finalizers; len(got) != 1 {
		t.Errorf("finalizers %v: removed before Finalize was done", got)
	}

	cleanup := errors.New("cluster unreachable")
	h.finalize = func(context.Context, *v1beta1.Istio) (bool, ctrl.Result, error) {
		return false, ctrl.Result{}, cleanup
	}
	if _, err := h.reconcile(t); !errors.Is(err, cleanup) {
		t.Fatalf("error %v, want Finalize's", err)
	}
	if got := h.get(t).Finalizers; len(got) != 1 {
		t.Errorf("finalizers %v: removed after Finalize failed", got)
	}

	// Done: the finalizer goes, and with it the resource.
	h.finalize = func(context.Context, *v1beta1.Istio) (bool, ctrl.Result, error) { return true, ctrl.Result{}, nil }
	if _, err := h.reconcile(t); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Get(t.Context(), key, &v1beta1.Istio{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after the finalizer was removed: %v, want not found", err)
	}
	if h.runs != 0 || h.statusWrites != 0 {
		t.Errorf("runs %d, status writes %d during deletion; want none", h.runs, h.statusWrites)
	}
}
