package conditions

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// Change is a status that may have changed since it was read.
type Change struct {
	// Before and After are the status as read and as it is now (pointers of
	// one type); nothing is written when they are equal, so a steady-state
	// reconcile makes no API write.
	Before, After any
	// From and To are the phase before and after; an event is recorded when
	// they differ, with Summary as its note.
	From, To v1beta1.Phase
	Summary  string
}

// WriteStatus writes obj's status subresource when it changed. A conflict
// (our copy was stale) is reported, not returned as an error, so the caller
// can look again at once. rec may be nil for a resource that has no phase.
func WriteStatus(ctx context.Context, c client.Client, rec events.EventRecorder, obj client.Object, ch Change) (conflict bool, err error) {
	if equality.Semantic.DeepEqual(ch.Before, ch.After) {
		return false, nil
	}
	if err := c.Status().Update(ctx, obj); err != nil {
		if apierrors.IsConflict(err) {
			return true, nil
		}
		return false, fmt.Errorf("update status of %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	if ch.From != ch.To && rec != nil {
		kind := "Normal"
		if ch.To == v1beta1.PhaseFailed {
			kind = "Warning"
		}
		rec.Eventf(obj, nil, kind, string(ch.To), "Reconcile", "%s", ch.Summary)
	}
	return false, nil
}
