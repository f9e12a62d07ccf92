package podrun

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// register creates the Pod object of a started replica: the template's
// labels and spec, on a node named podrun-node (nothing schedules or runs
// it; the process stands in for it).
func (r *Runner) register(ctx context.Context, d *appsv1.Deployment, name string) error {
	kube, err := kubernetes.NewForConfig(r.Admin)
	if err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = "podrun-node"
	if _, err := kube.CoreV1().Pods(d.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("registering Pod %s/%s: %w", d.Namespace, name, err)
	}
	return nil
}

// Front plays the Service svc's port named port on 127.0.0.1: each
// connection goes to a started, registered pod that the Service's selector
// matches at that moment (the first by name), at the local port of its
// targetPort (Options.Ports, by container port name). It listens on addr
// (host:port; "" picks a free port), returns the address and stops when
// the test ends.
func (r *Runner) Front(t testing.TB, svc *corev1.Service, port, addr string) string {
	t.Helper()
	var target string
	for _, p := range svc.Spec.Ports {
		if p.Name == port {
			target = p.TargetPort.String()
		}
	}
	if target == "" {
		t.Fatalf("podrun front: Service %s/%s has no port named %s with a named targetPort", svc.Namespace, svc.Name, port)
	}
	kube, err := kubernetes.NewForConfig(r.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sel := labels.SelectorFromSet(svc.Spec.Selector).String()
	backend := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pods, err := kube.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return "", err
		}
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		sort.Strings(names)
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, n := range names {
			if lp := r.ports[svc.Namespace+"/"+n][target]; lp != 0 {
				return fmt.Sprintf("127.0.0.1:%d", lp), nil
			}
		}
		return "", fmt.Errorf("no started pod selected by %s has port %s", sel, target)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				addr, err := backend()
				if err != nil {
					t.Logf("podrun front %s/%s: %v", svc.Namespace, svc.Name, err)
					return // a Service without endpoints: the connection is refused
				}
				b, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// SetAvailable writes the status the Deployment controller would once n
// replicas of d's current template run and are ready (podrun runs no
// controller): for readiness checks of whoever rendered d.
func (r *Runner) SetAvailable(ctx context.Context, d *appsv1.Deployment, n int32) error {
	kube, err := kubernetes.NewForConfig(r.Admin)
	if err != nil {
		return err
	}
	cur, err := kube.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Status = appsv1.DeploymentStatus{ObservedGeneration: cur.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	if _, err := kube.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("status of Deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return nil
}
