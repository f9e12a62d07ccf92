//go:build integration

package localcluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestFakeNodesRollOutDeployments: with FakeNodes a Deployment creates a
// ReplicaSet whose Pods are scheduled onto the kwok Node and become Ready,
// and a template change rolls out to a new ReplicaSet while the old one is
// scaled to zero — no test writes any status.
func TestFakeNodesRollOutDeployments(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary", ControllerManager: true,
		Controllers: localcluster.RolloutControllers, FakeNodes: true})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kube := kubernetes.NewForConfigOrDie(env.Cluster("primary").Config)
	labels := map[string]string{"app": "web"}
	replicas := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.com/web:1"}}},
			},
		},
	}
	if _, err := kube.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rolledOut := func(image string) func() error {
		return func() error {
			cur, err := kube.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			pods, err := kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			ready := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil {
					continue
				}
				if p.Spec.NodeName != localcluster.FakeNodeName || p.Spec.Containers[0].Image != image || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
					return fmt.Errorf("pod %s: node %q, image %s, phase %s, IP %q", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image, p.Status.Phase, p.Status.PodIP)
				}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			if ready != 2 {
				return fmt.Errorf("%d of 2 pods ready (%d listed)", ready, len(pods.Items))
			}
			s := cur.Status
			if s.ObservedGeneration != cur.Generation || s.Replicas != 2 || s.UpdatedReplicas != 2 || s.ReadyReplicas != 2 || s.AvailableReplicas != 2 {
				return fmt.Errorf("generation %d, status %+v", cur.Generation, s)
			}
			return nil
		}
	}
	testenv.Eventually(t, 2*time.Minute, "the Deployment rolled out on the kwok Node", rolledOut("example.com/web:1"))

	cur, err := kube.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Spec.Containers[0].Image = "example.com/web:2"
	if _, err := kube.AppsV1().Deployments("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, "the new template rolled out", rolledOut("example.com/web:2"))
	rss, err := kube.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rss.Items) != 2 {
		t.Fatalf("%d ReplicaSets, want the old and the new one", len(rss.Items))
	}
	for _, rs := range rss.Items {
		want := int32(0)
		if rs.Spec.Template.Spec.Containers[0].Image == "example.com/web:2" {
			want = 2
		}
		if *rs.Spec.Replicas != want {
			t.Errorf("ReplicaSet %s (%s): %d replicas, want %d", rs.Name, rs.Spec.Template.Spec.Containers[0].Image, *rs.Spec.Replicas, want)
		}
	}
}
