package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"

	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// blockedReconciler never returns until release is closed.
type blockedReconciler struct {
	entered chan struct{}
	release chan struct{}
}

func (r blockedReconciler) Reconcile(context.Context, string) (reconcile.Result, error) {
	close(r.entered)
	<-r.release
	return reconcile.Result{}, nil
}

// TestReconcilingFindsABlockedReconcile runs a real controller-runtime
// controller whose reconcile blocks, and checks that reconciling reports
// that goroutine, with the reconciler's frame, and not the idle workers.
func TestReconcilingFindsABlockedReconcile(t *testing.T) {
	r := blockedReconciler{entered: make(chan struct{}), release: make(chan struct{})}
	defer close(r.release)
	skip := true
	c, err := controller.NewTypedUnmanaged[string]("blocked", controller.TypedOptions[string]{
		Reconciler: r, MaxConcurrentReconciles: 2, SkipNameValidation: &skip,
	})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan event.TypedGenericEvent[string], 1)
	if err := c.Watch(source.TypedChannel[string, string](events, handler.TypedFuncs[string, string]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[string], q workqueue.TypedRateLimitingInterface[string]) {
			q.Add(e.Object)
		},
	})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = c.Start(ctx) }()
	events <- event.TypedGenericEvent[string]{Object: "one"}
	select {
	case <-r.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the reconcile never started")
	}

	got := reconciling(allStacks())
	if n := strings.Count("\n"+got, "\ngoroutine "); n != 1 {
		t.Fatalf("reported %d goroutines, want the 1 inside a reconcile:\n%s", n, got)
	}
	if !strings.Contains(got, "testenv.blockedReconciler.Reconcile") {
		t.Errorf("the report lacks the reconciler's frame:\n%s", got)
	}
	if reconciling("goroutine 1 [running]:\nmain.main()\n\ngoroutine 2 [chan receive]:\nmain.f()") != "" {
		t.Error("goroutines outside a reconcile were reported")
	}
}
