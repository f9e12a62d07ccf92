//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// workload is one echo replica: its Pod runs on a Node in region/zone.
type workload struct {
	name, node, region, zone string
	addr                     netip.Addr
}

const (
	echoService = "echo"
	echoPort    = 7070
	echoHost    = "echo.default.svc.cluster.local"
)

// createNodes creates one Node per workload, labelled with its region and zone.
func createNodes(ctx context.Context, t *testing.T, kube kubernetes.Interface, ws []workload) {
	t.Helper()
	for _, w := range ws {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: w.node, Labels: map[string]string{
			corev1.LabelTopologyRegion: w.region,
			corev1.LabelTopologyZone:   w.zone,
		}}}
		mustCreate(t, "node "+w.node, func() error {
			_, err := kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
			return err
		})
	}
}

// createEchoService creates the Service and, since no kubelet runs, Pods
// whose status claims they run on their Node with their address and are Ready.
func createEchoService(ctx context.Context, t *testing.T, kube kubernetes.Interface, ws []workload) {
	t.Helper()
	labels := map[string]string{"app": echoService}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: echoService, Namespace: "default", Labels: labels},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{
			Name: "grpc", Port: echoPort, Protocol: corev1.ProtocolTCP, AppProtocol: ptr("grpc"),
		}}},
	}
	mustCreate(t, "service default/echo", func() error {
		_, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		return err
	})
	for _, w := range ws {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: "default", Labels: labels},
			Spec: corev1.PodSpec{NodeName: w.node, Containers: []corev1.Container{{
				Name: "echo", Image: "echo", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: echoPort}},
			}}},
		}
		mustCreate(t, "pod default/"+w.name, func() error {
			created, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			created.Status = corev1.PodStatus{
				Phase:      corev1.PodRunning,
				PodIP:      w.addr.String(),
				PodIPs:     []corev1.PodIP{{IP: w.addr.String()}},
				HostIP:     "127.0.0.1",
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			}
			_, err = kube.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{})
			return err
		})
	}
}

// echoSlice is the EndpointSlice of the echo Service, as the endpointslice
// controller would write it; notReady names workloads marked not ready.
func echoSlice(ws []workload, notReady map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: echoService + "-1", Namespace: "default", Labels: map[string]string{
			discoveryv1.LabelServiceName: echoService,
			discoveryv1.LabelManagedBy:   "meshfleet-e2e",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(echoPort)), Protocol: ptr(corev1.ProtocolTCP), AppProtocol: ptr("grpc")}},
	}
	for _, w := range ws {
		ready := !notReady[w.name]
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{w.addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: ptr(false)},
			NodeName:   ptr(w.node),
			Zone:       ptr(w.zone),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: w.name},
		})
	}
	return s
}

// applyOutlierDestinationRule creates a DestinationRule for the echo host
// with outlier detection, without which istiod sends no locality priorities.
func applyOutlierDestinationRule(ctx context.Context, t *testing.T, cfg *rest.Config) {
	t.Helper()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("building client: %v", err)
	}
	dr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "DestinationRule",
		"metadata":   map[string]any{"name": echoService, "namespace": "default"},
		"spec": map[string]any{
			"host": echoHost,
			"trafficPolicy": map[string]any{"outlierDetection": map[string]any{
				"consecutive5xxErrors": int64(3),
				"interval":             "1s",
				"baseEjectionTime":     "30s",
			}},
		},
	}}
	if err := c.Create(ctx, dr); err != nil {
		t.Fatalf("creating DestinationRule default/%s: %v", echoService, err)
	}
}

func ptr[T any](v T) *T { return &v }

func (w workload) String() string {
	return fmt.Sprintf("%s (%s/%s, %s)", w.name, w.region, w.zone, w.addr)
}
