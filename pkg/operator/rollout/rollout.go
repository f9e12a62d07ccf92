// Package rollout tells whether the Deployments of a manifest have rolled
// out, the way `kubectl rollout status` does.
package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// Status reports whether every Deployment among objs (istiod, gateways) has
// rolled out its current template and has all replicas available. A
// Deployment annotated render.AnnotationReadyWhen=available (meshfleet's own
// components, which follow the operator's version rather than the spec)
// counts while it has all its replicas available, old or new: its rolling
// update never takes one away.
func Status(ctx context.Context, r client.Reader, objs []*unstructured.Unstructured) conditions.Outcome {
	var waitingOn []string
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		if err := r.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
			return conditions.Transient(v1beta1.ReasonRollingOut, fmt.Sprintf("reading Deployment %s/%s: %v", o.GetNamespace(), o.GetName(), err), err)
		}
		dep := &appsv1.Deployment{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, dep); err != nil {
			return conditions.Transient(v1beta1.ReasonRollingOut, err.Error(), err)
		}
		done, msg, stuck := rolledOut(dep)
		if stuck {
			return conditions.Failed(v1beta1.ReasonDeploymentFailed, fmt.Sprintf(
				"Deployment %s/%s cannot roll out: %s; check its pods (kubectl -n %s describe deployment %s) and that spec.hub and spec.version name images that exist",
				dep.Namespace, dep.Name, msg, dep.Namespace, dep.Name))
		}
		if !done {
			waitingOn = append(waitingOn, fmt.Sprintf("%s (%s)", dep.Name, msg))
		}
	}
	if len(waitingOn) > 0 {
		return conditions.Waiting(v1beta1.ReasonRollingOut, "waiting for Deployments to roll out: "+strings.Join(waitingOn, ", "), 10*time.Second)
	}
	return conditions.Succeeded("istiod and gateways are available")
}

// rolledOut is kubectl rollout status for one Deployment: whether the current
// generation is fully rolled out, a message, and whether it is stuck.
func rolledOut(d *appsv1.Deployment) (done bool, msg string, stuck bool) {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return false, c.Message, true
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	if d.Annotations[render.AnnotationReadyWhen] == render.ReadyWhenAvailable {
		if s.AvailableReplicas < want {
			return false, fmt.Sprintf("%d of %d replicas available", s.AvailableReplicas, want), false
		}
		return true, "", false
	}
	switch {
	case s.ObservedGeneration < d.Generation:
		return false, "new spec not yet observed", false
	case s.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", s.UpdatedReplicas, want), false
	case s.Replicas > s.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", s.Replicas-s.UpdatedReplicas), false
	case s.AvailableReplicas < want:
		return false, fmt.Sprintf("%d of %d updated replicas available", s.AvailableReplicas, want), false
	}
	return true, "", false
}
