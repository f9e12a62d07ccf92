// Package fakerollout reports Deployments rolled out by writing their status,
// for tests and benchmarks that must choose the instant a Deployment becomes
// ready (or leave some not ready). Where that instant does not matter, run
// the cluster with localcluster.ClusterOptions.FakeNodes instead: the real
// deployment controller and kwok roll Deployments out (ARCHITECTURE.md
// decisions 45 and 52).
package fakerollout

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Status is the status of d fully rolled out: its current generation
// observed, every desired replica (1 if unset) updated, ready and available.
func Status(d *appsv1.Deployment) appsv1.DeploymentStatus {
	r := int32(1)
	if d.Spec.Replicas != nil {
		r = *d.Spec.Replicas
	}
	return appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: r, UpdatedReplicas: r, ReadyReplicas: r, AvailableReplicas: r}
}

// RollOut reads the Deployment namespace/name and writes Status into it.
// It returns the Deployment as written.
func RollOut(ctx context.Context, c client.Client, namespace, name string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, d); err != nil {
		return nil, fmt.Errorf("reading Deployment %s/%s to roll it out: %w", namespace, name, err)
	}
	if err := write(ctx, c, d); err != nil {
		return nil, err
	}
	return d, nil
}

// RollOutAll writes Status into every Deployment the list options select
// and returns how many it rolled out.
func RollOutAll(ctx context.Context, c client.Client, opts ...client.ListOption) (int, error) {
	var list appsv1.DeploymentList
	if err := c.List(ctx, &list, opts...); err != nil {
		return 0, fmt.Errorf("listing Deployments to roll out: %w", err)
	}
	for i := range list.Items {
		if err := write(ctx, c, &list.Items[i]); err != nil {
			return i, err
		}
	}
	return len(list.Items), nil
}

func write(ctx context.Context, c client.Client, d *appsv1.Deployment) error {
	d.Status = Status(d)
	if err := c.Status().Update(ctx, d); err != nil {
		return fmt.Errorf("writing the rolled-out status of Deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return nil
}
