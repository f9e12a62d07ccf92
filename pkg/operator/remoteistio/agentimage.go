package remoteistio

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// agentImagePatch is the strategic-merge patch that sets the agent
// container's image and nothing else: the rest of the Deployment stays the
// joining admin's (replicas, resources, node placement).
func agentImagePatch(image string) []byte {
	return fmt.Appendf(nil, `{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, render.TunnelAgentContainer, image)
}

// followAgentImage keeps the agent Deployment of a tunnelled cluster at the
// operator's own image, through the tunnel that agent serves: the
// Deployment rolls one new agent out before an old one stops, and the
// server spreads requests over the agents still connected. It returns the
// image the agents were moved from ("" when nothing changed). A cluster
// whose agents run outside that Deployment (none found) is left alone.
func (r *Reconciler) followAgentImage(ctx context.Context, rem *remote) (string, error) {
	if r.AgentImage == "" {
		return "", nil
	}
	dep := &appsv1.Deployment{}
	key := client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: render.TunnelAgentName}
	if err := rem.client.Get(ctx, key, dep); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("reading the agent Deployment %s: %w", key, err)
	}
	var from string
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == render.TunnelAgentContainer {
			from = c.Image
		}
	}
	if from == "" || from == r.AgentImage {
		return "", nil
	}
	if err := rem.client.Patch(ctx, dep, client.RawPatch(types.StrategicMergePatchType, agentImagePatch(r.AgentImage)), client.FieldOwner(apply.OperatorFieldManager)); err != nil {
		return "", fmt.Errorf("updating the agent Deployment %s from image %s to %s: %w", key, from, r.AgentImage, err)
	}
	return from, nil
}
