package localcluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localproc"
)

// FakeNodeName is the Node that kwok plays the kubelet of in a cluster
// started with ClusterOptions.FakeNodes.
const FakeNodeName = "kwok-node-0"

// kwokNodeAnnotation marks the Nodes kwok manages (its own convention,
// --manage-nodes-with-annotation-selector).
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// kubeSchedulerArgs returns kube-scheduler's command line: no leader
// election, no serving port.
func kubeSchedulerArgs(files clusterFiles) []string {
	return []string{
		"--kubeconfig=" + files.kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
	}
}

// kwokArgs returns kwok's command line: it manages only the Nodes
// annotated kwok.x-k8s.io/node=fake and plays the stages in config (its
// "fast" node and pod stages: Nodes become Ready, scheduled Pods Running and
// Ready at once, deleted Pods go away).
func kwokArgs(files clusterFiles, config string) []string {
	return []string{
		"--kubeconfig=" + files.kubeconfig,
		"--config=" + config,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
	}
}

// fakeNode is the Node kwok manages: room for any Pod the tests create.
func fakeNode() *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        FakeNodeName,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": FakeNodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// startFakeNodes starts kube-scheduler and kwok, creates FakeNodeName and
// waits until kwok reports it Ready: from then on the deployment and
// replicaset controllers' Pods are scheduled onto it and kwok makes them
// Running and Ready, so Deployments roll out as on a cluster.
func (c *Cluster) startFakeNodes(ctx context.Context, bins Binaries, files clusterFiles, timeout time.Duration) error {
	p, err := localproc.Start("kube-scheduler", bins.KubeScheduler, kubeSchedulerArgs(files), nil, files.schedulerLog)
	if err != nil {
		return err
	}
	c.scheduler = p
	k, err := localproc.Start("kwok", bins.Kwok, kwokArgs(files, bins.KwokConfig), nil, files.kwokLog)
	if err != nil {
		return err
	}
	c.kwok = k
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("building client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := client.CoreV1().Nodes().Create(ctx, fakeNode(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Node %s: %w", FakeNodeName, err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, proc := range []struct {
			name, log string
			p         *localproc.Process
		}{{"kube-scheduler", files.schedulerLog, p}, {"kwok", files.kwokLog, k}} {
			if exited, _ := proc.p.Exited(); exited {
				return fmt.Errorf("%s %s; last lines of %s:\n%s", proc.name, proc.p.DescribeExit(), proc.log, localproc.TailFile(proc.log, 40))
			}
		}
		err := nodeReady(ctx, client)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fake Node %s not Ready: %w (last: %v); last lines of %s:\n%s", FakeNodeName, ctx.Err(), err, files.kwokLog, localproc.TailFile(files.kwokLog, 40))
		case <-tick.C:
		}
	}
}

func nodeReady(ctx context.Context, client kubernetes.Interface) error {
	n, err := client.CoreV1().Nodes().Get(ctx, FakeNodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return errors.New("kwok has not made it Ready yet")
}
