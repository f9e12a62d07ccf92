package rollout

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/render"
)

// TestRolledOut: Istio's Deployments are done once fully rolled out;
// meshfleet's own (ready-when=available) while all their replicas are
// available, old or new, so an operator upgrade keeps the mesh Ready.
func TestRolledOut(t *testing.T) {
	two := int32(2)
	rolling := appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 2}
	for _, tt := range []struct {
		name   string
		annot  map[string]string
		status appsv1.DeploymentStatus
		want   bool
	}{
		{"istiod rolling", nil, rolling, false},
		{"istiod done", nil, appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}, true},
		{"own, rolling with two available", map[string]string{render.AnnotationReadyWhen: render.ReadyWhenAvailable}, rolling, true},
		{"own, one available", map[string]string{render.AnnotationReadyWhen: render.ReadyWhenAvailable}, appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, AvailableReplicas: 1}, false},
		{"own, new", map[string]string{render.AnnotationReadyWhen: render.ReadyWhenAvailable}, appsv1.DeploymentStatus{}, false},
	} {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2, Annotations: tt.annot}, Spec: appsv1.DeploymentSpec{Replicas: &two}, Status: tt.status}
		if got, msg, _ := rolledOut(d); got != tt.want {
			t.Errorf("%s: rolled out %v (%s), want %v", tt.name, got, msg, tt.want)
		}
	}
}
