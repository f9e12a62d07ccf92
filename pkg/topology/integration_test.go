//go:build integration

package topology_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestWatcherFollowsChanges runs the watcher against two real API servers
// and checks that every kind of change reaches Snapshot — a relabelled
// Node, endpoints going not ready, a Pod's locality label, a Service's
// annotation, a Service deleted — in the cluster where it happens, while
// the other cluster's (cached) share stays as it was.
func TestWatcherFollowsChanges(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "c1"}, localcluster.ClusterOptions{Name: "c2"})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	kube := map[string]kubernetes.Interface{}
	cfgs := map[string]*rest.Config{}
	for i, name := range []string{"c1", "c2"} {
		cfgs[name] = env.Cluster(name).Config
		kube[name] = kubernetes.NewForConfigOrDie(cfgs[name])
		region := fmt.Sprintf("r%d", i+1)
		must(t, create(ctx, kube[name], region))
	}
	w, err := topology.NewWatcher(cfgs, topology.WatcherOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	w.Start(ctx)
	must(t, w.WaitForSync(ctx))

	echo := func() topology.Service {
		for _, s := range w.Snapshot().Services {
			if s.Key() == "default/echo" {
				return s
			}
		}
		return topology.Service{}
	}
	groups := func() string {
		var parts []string
		for _, g := range echo().Endpoints {
			parts = append(parts, fmt.Sprintf("{%s %s %d %d}", g.Cluster, g.Locality, g.Ready, g.NotReady))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	want := "[{c1 r1/z1 1 0} {c2 r2/z1 1 0}]"
	testenv.Eventually(t, 30*time.Second, "both clusters' endpoints", func() error {
		if got := groups(); got != want {
			return fmt.Errorf("endpoint groups %s, want %s", got, want)
		}
		return nil
	})

	// A Node relabelled in c2: c2's share is rebuilt, c1's is kept.
	n, err := kube["c2"].CoreV1().Nodes().Get(ctx, "node-z1", metav1.GetOptions{})
	must(t, err)
	n.Labels[topology.LabelRegion] = "r3"
	_, err = kube["c2"].CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	must(t, err)
	expect(t, groups, "[{c1 r1/z1 1 0} {c2 r3/z1 1 0}]")

	// c1's endpoint goes not ready.
	es, err := kube["c1"].DiscoveryV1().EndpointSlices("default").Get(ctx, "echo-1", metav1.GetOptions{})
	must(t, err)
	es.Endpoints[0].Conditions.Ready = ptr(false)
	_, err = kube["c1"].DiscoveryV1().EndpointSlices("default").Update(ctx, es, metav1.UpdateOptions{})
	must(t, err)
	expect(t, groups, "[{c1 r1/z1 0 1} {c2 r3/z1 1 0}]")

	// A Pod's topology.istio.io/locality label overrides its Node's.
	pod, err := kube["c1"].CoreV1().Pods("default").Get(ctx, "echo-0", metav1.GetOptions{})
	must(t, err)
	pod.Labels = map[string]string{topology.LabelIstioLocality: "r9.z9"}
	_, err = kube["c1"].CoreV1().Pods("default").Update(ctx, pod, metav1.UpdateOptions{})
	must(t, err)
	expect(t, groups, "[{c1 r9/z9 0 1} {c2 r3/z1 1 0}]")

	// The legacy label istio-locality counts when the first is absent
	// (istiod's GetLocalityLabel), with every dot a separator.
	pod, err = kube["c1"].CoreV1().Pods("default").Get(ctx, "echo-0", metav1.GetOptions{})
	must(t, err)
	pod.Labels = map[string]string{topology.LabelIstioLocalityLegacy: "r8.z8.s8"}
	_, err = kube["c1"].CoreV1().Pods("default").Update(ctx, pod, metav1.UpdateOptions{})
	must(t, err)
	expect(t, groups, "[{c1 r8/z8/s8 0 1} {c2 r3/z1 1 0}]")

	// A Service's meshfleet.io/ annotation.
	svc, err := kube["c1"].CoreV1().Services("default").Get(ctx, "echo", metav1.GetOptions{})
	must(t, err)
	svc.Annotations = map[string]string{"meshfleet.io/locality": "off"}
	_, err = kube["c1"].CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{})
	must(t, err)
	expect(t, func() string { return fmt.Sprint(echo().Annotations) }, "map[meshfleet.io/locality:off]")

	// istiod's namespace-level traffic distribution annotation (c1's copy
	// is the one used: no config cluster given, first by name).
	nsObj, err := kube["c1"].CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	must(t, err)
	nsObj.Annotations = map[string]string{topology.AnnotationTrafficDistribution: "PreferClose"}
	_, err = kube["c1"].CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{})
	must(t, err)
	expect(t, func() string { return echo().TrafficDistribution + " (" + echo().TrafficDistributionFrom + ")" },
		"PreferClose (annotation networking.istio.io/traffic-distribution on namespace default of c1's copy)")

	// A reader without the right to list namespaces (an older RBAC) still
	// syncs; it just does not see the namespace annotation.
	_, err = kube["c1"].RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "old-locality-reader"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes", "services", "pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		}}, metav1.CreateOptions{})
	must(t, err)
	_, err = kube["c1"].RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "old-locality-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "old-locality-reader"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "old-reader"}}}, metav1.CreateOptions{})
	must(t, err)
	limited := rest.CopyConfig(cfgs["c1"])
	limited.Impersonate = rest.ImpersonationConfig{UserName: "old-reader"}
	lw, err := topology.NewWatcher(map[string]*rest.Config{"c1": limited}, topology.WatcherOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	lw.Start(ctx)
	must(t, lw.WaitForSync(ctx))
	for _, s := range lw.Snapshot().Services {
		if s.Key() == "default/echo" && s.TrafficDistribution != "" {
			t.Errorf("a reader that may not list namespaces read their annotation: %q", s.TrafficDistribution)
		}
	}

	// The Service deleted in c1: only c2's endpoints remain.
	must(t, kube["c1"].CoreV1().Services("default").Delete(ctx, "echo", metav1.DeleteOptions{}))
	expect(t, groups, "[{c2 r3/z1 1 0}]")
}

// expect waits until got returns want.
func expect(t *testing.T, got func() string, want string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, want, func() error {
		if g := got(); g != want {
			return fmt.Errorf("got %s", g)
		}
		return nil
	})
}

// create makes a Node node-z1 in region/z1, and a Service default/echo with
// one Pod on it and its EndpointSlice.
func create(ctx context.Context, kube kubernetes.Interface, region string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-z1", Labels: map[string]string{topology.LabelRegion: region, topology.LabelZone: "z1"}}}
	if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return err
	}
	// No kube-controller-manager: Pods need the default ServiceAccount.
	if _, err := kube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "echo-0", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "node-z1", Containers: []corev1.Container{{Name: "echo", Image: "echo"}}}}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}
	if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "echo-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.18.9.1"}, NodeName: ptr("node-z1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "echo-0"}}},
	}
	_, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{})
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }
