// Package reconciler is the Reconcile skeleton the operator's controllers
// share: read the resource, finalize it when it is being deleted, else make
// sure it carries the finalizer, run the controller's steps, and write the
// status they recorded only when it changed, looking again at once when the
// write met a newer version of the resource. The controllers declare only
// their steps, their finalizer's clean-up and how their status is written.
package reconciler

import (
	"context"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// ConflictRetry is how soon a reconcile whose status write met a newer
// version of the resource looks again.
const ConflictRetry = 100 * time.Millisecond

// Steps is one controller's reconcile of resources of type T (a pointer to
// an API type, such as *v1beta1.Istio).
type Steps[T client.Object] struct {
	// Kind names the resource in errors and logs ("Istio").
	Kind string
	// Client reads the resource and writes its finalizer.
	Client client.Client
	// Finalizer holds the resource until Finalize reports it is done.
	Finalizer string
	// New returns an empty resource to read into.
	New func() T
	// Run does the steps for a resource that is not being deleted,
	// recording each outcome in obj's status, which the skeleton then
	// writes: it is written on an error too.
	Run func(ctx context.Context, obj T) (ctrl.Result, error)
	// WriteStatus writes obj's status when it differs from before's (obj as
	// it was read), and reports a write that met a newer version of the
	// resource as a conflict rather than an error.
	WriteStatus func(ctx context.Context, obj, before T) (conflict bool, err error)
	// Finalize undoes what Run did for a resource being deleted that still
	// carries the finalizer, writing its own status. It reports done once
	// nothing is left, and the skeleton then removes the finalizer;
	// otherwise its result says when to look again.
	Finalize func(ctx context.Context, obj T) (done bool, res ctrl.Result, err error)
}

// Reconcile moves the resource req names one step closer to its spec: a
// resource that is gone is not an error, one being deleted is finalized,
// otherwise the steps run and their status is written.
func (s Steps[T]) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := s.New()
	if err := s.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return s.finalize(ctx, obj)
	}
	if err := s.ensureFinalizer(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}

	before := obj.DeepCopyObject().(T)
	res, err := s.Run(ctx, obj)
	conflict, serr := s.WriteStatus(ctx, obj, before)
	if err == nil {
		err = serr
	}
	if err != nil {
		logf.FromContext(ctx).Error(err, "reconcile step failed", "kind", s.Kind)
		return ctrl.Result{}, err // the error makes the controller back off and look again
	}
	if conflict {
		// Our copy was stale; look again at once rather than lose this status.
		return ctrl.Result{RequeueAfter: ConflictRetry}, nil
	}
	return res, nil
}

// ensureFinalizer adds the finalizer to obj (one update) unless it has it.
func (s Steps[T]) ensureFinalizer(ctx context.Context, obj T) error {
	if !controllerutil.AddFinalizer(obj, s.Finalizer) {
		return nil
	}
	if err := s.Client.Update(ctx, obj); err != nil {
		return fmt.Errorf("add finalizer %s to %s %s/%s: %w", s.Finalizer, s.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// finalize runs Finalize for a resource being deleted that carries the
// finalizer, and removes the finalizer once Finalize is done.
func (s Steps[T]) finalize(ctx context.Context, obj T) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, s.Finalizer) {
		return ctrl.Result{}, nil
	}
	done, res, err := s.Finalize(ctx, obj)
	if err != nil || !done {
		return res, err
	}
	controllerutil.RemoveFinalizer(obj, s.Finalizer)
	if err := s.Client.Update(ctx, obj); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("remove finalizer %s from %s %s/%s: %w", s.Finalizer, s.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return ctrl.Result{}, nil
}
