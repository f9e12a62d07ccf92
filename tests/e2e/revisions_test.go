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

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/revisions"
)

// TestTwoRevisions runs two istiod revisions side by side (the same
// pilot-discovery binary started with REVISION=<rev>, each reading the
// injector ConfigMap and mesh config meshfleet renders for its revision), sends an
// AdmissionReview to each revision's injection endpoint, creates the
// injected Pods in the apiserver and counts them per revision; the old
// revision is not removable while a Pod uses it.
func TestTwoRevisions(t *testing.T) {
	s := startCluster(t, "primary")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	revs := []string{"1.31.0", "1.31.1"}
	urls := map[string]string{}
	for _, v := range revs {
		cp, errs := render.FromIstio(&v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
			Spec: v1beta1.IstioSpec{Version: v, ClusterName: "primary"}})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		cp.Revision = render.RevisionName(v)
		m, err := render.Render(cp)
		if err != nil {
			t.Fatal(err)
		}
		cm := &corev1.ConfigMap{}
		if err := find(m.Objects, "ConfigMap", "istio-sidecar-injector-"+cp.Revision, cm); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, "configmap "+cm.Name, func() error {
			_, err := s.kube.CoreV1().ConfigMaps("istio-system").Create(ctx, cm, metav1.CreateOptions{})
			return err
		})
		mesh := &corev1.ConfigMap{}
		if err := find(m.Objects, "ConfigMap", "istio-"+cp.Revision, mesh); err != nil {
			t.Fatal(err)
		}
		d := startIstiod(ctx, t, localistiod.Options{
			MeshConfig: mesh.Data["mesh"],
			Kubeconfig: s.cluster.Kubeconfig,
			Dir:        filepath.Join(s.env.Dir, "istiod-"+cp.Revision),
			ClusterID:  "primary",
			Env:        []string{"INJECT_ENABLED=true", "REVISION=" + cp.Revision, "POD_NAME=istiod-" + cp.Revision},
		})
		urls[cp.Revision] = "http://" + d.HTTPAddr + "/inject"
	}

	pods := s.kube.CoreV1().Pods("default")
	for rev, url := range urls {
		app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app-" + rev, Namespace: "default", Labels: map[string]string{"app": "app"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}}
		got := inject(ctx, t, url, app)
		if r := revisions.Of(got); r != rev {
			t.Errorf("pod injected by revision %s says revision %q", rev, r)
		}
		raw, _ := json.Marshal(got)
		if want := "istiod-" + rev + ".istio-system.svc:15012"; !strings.Contains(string(raw), want) {
			t.Errorf("pod injected by revision %s does not point at %s:\n%s", rev, want, raw)
		}
		got.ResourceVersion = ""
		mustCreate(t, "pod "+got.Name, func() error {
			_, err := pods.Create(ctx, got, metav1.CreateOptions{})
			return err
		})
	}

	count := func() map[string]int {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return revisions.Count(list.Items)
	}
	old, next := render.RevisionName(revs[0]), render.RevisionName(revs[1])
	if c := count(); c[old] != 1 || c[next] != 1 {
		t.Errorf("pods per revision %v, want one on each", c)
	}
	now := time.Now()
	if ok, why := revisions.Removable(old, count(), now.Add(-time.Hour), time.Minute, now); ok {
		t.Errorf("old revision removable while a pod uses it")
	} else {
		t.Logf("old revision kept: %s", why)
	}
	if err := pods.Delete(ctx, "app-"+old, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if ok, why := revisions.Removable(old, count(), now.Add(-time.Hour), time.Minute, now); !ok {
		t.Errorf("old revision not removable once unused: %s", why)
	}
}
