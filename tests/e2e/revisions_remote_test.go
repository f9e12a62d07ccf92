//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/revisions"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestRemoteRevisions: a RevisionBased primary in the middle of an upgrade
// (1.31.0 with the default tag, 1.31.1 installed beside it) and a remote
// joined to it. Two real istiod revisions (the same pilot-discovery with
// REVISION=<rev>, each reading the injector and mesh ConfigMaps rendered for
// its revision) answer AdmissionReviews sent the way the remote's rendered
// webhooks call them: each revisioned webhook's Service (istiod-<rev>) and
// remote path /inject/cluster/<c>/net/<n> give a pod injected by that
// revision, pointing at istiod-<rev> and carrying the remote's cluster ID
// and network; the default tag's webhook follows the tag when it moves.
// The injected pods are created in both apiservers and counted per revision
// across the clusters; the old revision is not removable while a remote pod
// uses it.
func TestRemoteRevisions(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"}, localcluster.ClusterOptions{Name: "west"})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	kube := map[string]*kubernetes.Clientset{}
	for _, c := range []string{"primary", "west"} {
		kube[c] = kubernetes.NewForConfigOrDie(env.Cluster(c).Config)
		for _, ns := range []string{"istio-system"} {
			mustCreate(t, c+" namespace "+ns, func() error {
				_, err := kube[c].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
				return err
			})
		}
		mustCreate(t, c+" serviceaccount default/default", func() error {
			_, err := kube[c].CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			return err
		})
	}
	if err := localistiod.InstallCRDs(ctx, env.Cluster("primary").Config); err != nil {
		t.Fatal(err)
	}

	old, next := "1-31-0", "1-31-1"
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{
		Version: "1.31.1", ClusterName: "primary", MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		UpdateStrategy: &v1beta1.UpdateStrategy{Type: v1beta1.UpdateStrategyRevisionBased}},
		Status: v1beta1.IstioStatus{Revisions: []v1beta1.RevisionStatus{{Name: old, Version: "1.31.0", Default: true}, {Name: next, Version: "1.31.1"}}}}
	primary, errs := render.FromIstio(ist)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "west", Namespace: "istio-system"}, Spec: v1beta1.RemoteIstioSpec{
		Network: "net-west", PilotAddress: "203.0.113.10", AutoInjectionNamespaces: []string{"default"}}}
	remote, errs := render.FromRemoteIstio(ri, primary)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	pm, err := render.RenderRevisions(primary, render.RevisionsOf(ist))
	if err != nil {
		t.Fatal(err)
	}

	// One real istiod per revision, as the primary's manifest configures it.
	urls := map[string]string{}
	for _, rev := range []string{old, next} {
		cm := &corev1.ConfigMap{}
		if err := find(pm.Objects, "ConfigMap", "istio-sidecar-injector-"+rev, cm); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, "configmap "+cm.Name, func() error {
			_, err := kube["primary"].CoreV1().ConfigMaps("istio-system").Create(ctx, cm, metav1.CreateOptions{})
			return err
		})
		mesh := &corev1.ConfigMap{}
		if err := find(pm.Objects, "ConfigMap", "istio-"+rev, mesh); err != nil {
			t.Fatal(err)
		}
		d := startIstiod(ctx, t, localistiod.Options{
			MeshConfig: mesh.Data["mesh"],
			Kubeconfig: env.Cluster("primary").Kubeconfig,
			Dir:        filepath.Join(env.Dir, "istiod-"+rev),
			ClusterID:  "primary",
			Env:        []string{"INJECT_ENABLED=true", "REVISION=" + rev, "POD_NAME=istiod-" + rev},
		})
		// The remote's Service istiod-<rev> leads (through the east-west
		// gateway, by SNI) to this istiod.
		urls["istiod-"+rev] = "http://" + d.HTTPAddr
	}

	// injectThrough sends a pod the way the remote's webhook calls istiod.
	injectThrough := func(rm *render.Manifest, hook, name string) (*corev1.Pod, string) {
		t.Helper()
		wh := &webhookConfig{}
		if err := find(rm.Objects, "MutatingWebhookConfiguration", hook, wh); err != nil {
			t.Fatal(err)
		}
		var svc struct {
			Webhooks []struct {
				ClientConfig struct {
					Service struct {
						Name string `json:"name"`
					} `json:"service"`
				} `json:"clientConfig"`
			} `json:"webhooks"`
		}
		u := findU(t, rm, "MutatingWebhookConfiguration", hook)
		b, _ := json.Marshal(u.Object)
		if err := json.Unmarshal(b, &svc); err != nil {
			t.Fatal(err)
		}
		service, path := svc.Webhooks[0].ClientConfig.Service.Name, *wh.Webhooks[0].ClientConfig.Service.Path
		if path != "/inject/cluster/west/net/net-west" {
			t.Fatalf("remote webhook %s path %s, want /inject/cluster/west/net/net-west", hook, path)
		}
		base, ok := urls[service]
		if !ok {
			t.Fatalf("remote webhook %s calls Service %s, which no revision runs", hook, service)
		}
		app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "app"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}}
		return inject(ctx, t, base+path, app), service
	}

	remote.Remote.Revisions = render.RevisionsOf(ist)
	rm, err := render.RenderRevisions(remote, remote.Remote.Revisions)
	if err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{old, next} {
		svc := findU(t, rm, "Service", "istiod-"+rev)
		if sel, _, _ := unstructured.NestedMap(svc.Object, "spec", "selector"); len(sel) > 0 {
			t.Errorf("remote Service istiod-%s selects %v; it must lead to the primary", rev, sel)
		}
	}
	created := map[string][]string{}
	create := func(cluster string, pod *corev1.Pod) {
		t.Helper()
		pod.ResourceVersion = ""
		mustCreate(t, cluster+" pod "+pod.Name, func() error {
			_, err := kube[cluster].CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
			return err
		})
		created[cluster] = append(created[cluster], pod.Name)
	}
	check := func(what, wantRev string, pod *corev1.Pod) {
		t.Helper()
		if r := revisions.Of(pod); r != wantRev {
			t.Errorf("%s: injected by revision %q, want %s", what, r, wantRev)
		}
		raw, _ := json.Marshal(pod)
		if want := "istiod-" + wantRev + ".istio-system.svc:15012"; !strings.Contains(string(raw), want) {
			t.Errorf("%s: pod does not point at %s", what, want)
		}
		checkClusterEnv(t, what, pod)
	}
	for hook, rev := range map[string]string{"istio-sidecar-injector-" + old: old, "istio-sidecar-injector-" + next: next, "istio-revision-tag-default": old} {
		pod, svc := injectThrough(rm, hook, "app-"+strings.TrimPrefix(hook, "istio-"))
		t.Logf("remote webhook %s -> Service %s -> revision %s", hook, svc, revisions.Of(pod))
		check("remote webhook "+hook, rev, pod)
		create("west", pod)
	}

	// The default tag moves to the new revision: re-rendered, the remote's
	// tag webhook calls it.
	ist.Status.Revisions[0].Default, ist.Status.Revisions[1].Default = false, true
	remote.Remote.Revisions = render.RevisionsOf(ist)
	rm, err = render.RenderRevisions(remote, remote.Remote.Revisions)
	if err != nil {
		t.Fatal(err)
	}
	pod, svc := injectThrough(rm, "istio-revision-tag-default", "app-moved")
	t.Logf("after the tag moved: remote webhook istio-revision-tag-default -> Service %s -> revision %s", svc, revisions.Of(pod))
	check("remote tag webhook after the move", next, pod)
	create("west", pod)
	// And a pod of the primary on the new revision.
	pp := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "primary-app", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}}
	create("primary", inject(ctx, t, urls["istiod-"+next]+"/inject", pp))

	count := func() (map[string]int, map[string]map[string]int) {
		total, per := map[string]int{}, map[string]map[string]int{}
		for _, c := range []string{"primary", "west"} {
			list, err := kube[c].CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			per[c] = revisions.Count(list.Items)
			for r, n := range per[c] {
				total[r] += n
			}
		}
		return total, per
	}
	total, per := count()
	t.Logf("pods per revision: %v; per cluster: %v", total, per)
	if total[old] != 2 || total[next] != 3 || per["west"][old] != 2 || per["primary"][next] != 1 {
		t.Errorf("pods per revision %v (per cluster %v), want %s=2 (west) and %s=3 (west 2, primary 1)", total, per, old, next)
	}
	now := time.Now()
	if ok, _ := revisions.Removable(old, total, now.Add(-time.Hour), time.Minute, now); ok {
		t.Errorf("old revision removable while remote pods use it")
	}
	for _, name := range created["west"] {
		p, err := kube["west"].CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if revisions.Of(p) == old {
			if err := kube["west"].CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	total, _ = count()
	if ok, why := revisions.Removable(old, total, now.Add(-time.Hour), time.Minute, now); !ok {
		t.Errorf("old revision not removable once the remote's pods left it: %s", why)
	}
}

// findU returns the rendered object of the kind and name.
func findU(t *testing.T, m *render.Manifest, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range m.Objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}
