//go:build integration

package members_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/locality/members"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestMembersFollowRemoteIstios runs the members watcher and a topology
// watcher against real API servers: the primary's Istio resource and a
// RemoteIstio with its kubeconfig Secret (written directly, no operator).
// Creating the RemoteIstio brings remote1's Nodes into the topology;
// deleting it takes them away; the Istio resource's failover order becomes
// the policy's.
func TestMembersFollowRemoteIstios(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"}, localcluster.ClusterOptions{Name: "remote1"})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1beta1.AddToScheme} {
		must(t, add(scheme))
	}
	pc, err := client.New(env.Cluster("primary").Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, pc, crds); err != nil {
		t.Fatalf("applying meshfleet's CRDs: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, "RemoteIstio kind served", func() error { return pc.List(ctx, &v1beta1.RemoteIstioList{}) })
	must(t, pc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}))
	must(t, pc.Create(ctx, &v1beta1.Istio{
		ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Spec: v1beta1.IstioSpec{Version: "1.30.3", ClusterName: "primary", LocalityLB: v1beta1.LocalityLBSpec{
			Enabled: true, Failover: []v1beta1.LocalityFailover{{From: "r1", To: "r3"}},
		}},
	}))
	for cluster, node := range map[string]struct{ name, region, zone string }{
		"primary": {"node-p", "r0", "z0"}, "remote1": {"node-r1", "r1", "z1"},
	} {
		kube := kubernetes.NewForConfigOrDie(env.Cluster(cluster).Config)
		_, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node.name,
			Labels: map[string]string{topology.LabelRegion: node.region, topology.LabelZone: node.zone}}}, metav1.CreateOptions{})
		must(t, err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	wctx, stop := context.WithCancel(t.Context())
	defer stop()
	f := &members.Follower{Log: log}
	mw, err := members.NewWatcher(env.Cluster("primary").Config, members.Options{}, log, f.OnChange)
	if err != nil {
		t.Fatal(err)
	}
	mw.Start(wctx)
	mesh, err := mw.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mesh.Members) != 1 || mesh.Members[0].Name != "primary" {
		t.Fatalf("members before any RemoteIstio: %+v", mesh.Members)
	}
	if p := f.Policy(); fmt.Sprint(p.Failover) != "[{r1 r3}]" {
		t.Errorf("policy failover = %v, want the Istio resource's [{r1 r3}]", p.Failover)
	}
	tw, err := topology.NewWatcher(mesh.Configs(), topology.WatcherOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	tw.Start(wctx)
	must(t, tw.WaitForSync(ctx))
	f.Attach(tw)
	waitNodes(t, tw, "primary:node-p@r0/z0")

	// Join remote1: its kubeconfig Secret, then the RemoteIstio.
	kc, err := os.ReadFile(env.Cluster("remote1").Kubeconfig)
	must(t, err)
	must(t, pc.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "remote1-kubeconfig", Namespace: "istio-system"},
		Data: map[string][]byte{v1beta1.KubeconfigSecretKey: kc}}))
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "remote1", Namespace: "istio-system"},
		Spec: v1beta1.RemoteIstioSpec{KubeconfigSecretRef: &corev1.LocalObjectReference{Name: "remote1-kubeconfig"}}}
	start := time.Now()
	must(t, pc.Create(ctx, ri))
	waitNodes(t, tw, "primary:node-p@r0/z0 remote1:node-r1@r1/z1")
	t.Logf("RemoteIstio created → remote1's nodes in the topology: %v", time.Since(start).Round(time.Millisecond))

	// The failover order follows the Istio resource.
	ist := &v1beta1.Istio{}
	must(t, pc.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: "istio"}, ist))
	ist.Spec.LocalityLB.Failover = []v1beta1.LocalityFailover{{From: "r1", To: "r2"}, {From: "r2", To: "r1"}}
	must(t, pc.Update(ctx, ist))
	testenv.Eventually(t, 10*time.Second, "policy follows the Istio resource", func() error {
		if got := fmt.Sprint(f.Policy().Failover); got != "[{r1 r2} {r2 r1}]" {
			return fmt.Errorf("failover %s", got)
		}
		return nil
	})

	// Leave: deleting the RemoteIstio takes remote1 out.
	start = time.Now()
	must(t, pc.Delete(ctx, ri))
	waitNodes(t, tw, "primary:node-p@r0/z0")
	t.Logf("RemoteIstio deleted → remote1's nodes gone: %v", time.Since(start).Round(time.Millisecond))

	// A RemoteIstio whose Secret is missing is left out until it appears.
	ri2 := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "istio-system"},
		Spec: v1beta1.RemoteIstioSpec{ClusterName: "remote1", KubeconfigSecretRef: &corev1.LocalObjectReference{Name: "late-kubeconfig"}}}
	must(t, pc.Create(ctx, ri2))
	time.Sleep(500 * time.Millisecond)
	waitNodes(t, tw, "primary:node-p@r0/z0")
	must(t, pc.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "late-kubeconfig", Namespace: "istio-system"},
		Data: map[string][]byte{v1beta1.KubeconfigSecretKey: kc}}))
	waitNodes(t, tw, "primary:node-p@r0/z0 remote1:node-r1@r1/z1")
}

func waitNodes(t *testing.T, tw *topology.Watcher, want string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "topology nodes "+want, func() error {
		var parts []string
		for _, c := range tw.Snapshot().Clusters {
			for _, n := range c.Nodes {
				parts = append(parts, c.Name+":"+n.Name+"@"+n.Locality.String())
			}
		}
		if got := strings.Join(parts, " "); got != want {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
