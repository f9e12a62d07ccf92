//go:build integration

package operator_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestRevisionBasedUpgrade: with spec.updateStrategy RevisionBased, a
// version change installs the new istiod revision beside the old one, the
// default tag moves once the new istiod has rolled out, status.revisions
// counts the pods on each, and the old revision is removed only once no pod
// uses it and the grace period passed.
func TestRevisionBasedUpgrade(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	ctx := t.Context()
	h := &harness{t: t, env: env, ctx: ctx}
	applyCRDs(t, env, "primary")
	h.kubectl("create", "namespace", ns)
	h.kubectl("create", "namespace", "apps")

	cfg := env.Cluster("primary").Config
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	if h.direct, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	mgr := framework.StartOperator(t, cfg, operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: time.Hour})
	h.c = mgr.GetClient()

	h.kubectl("apply", "--dry-run=server", "-f", repoPath("samples/istio-revisionbased.yaml"))
	bad := istioYAML(ns, "bad", `{"version":"1.29.6","updateStrategy":{"type":"InPlace","inactiveRevisionDeletionGracePeriodSeconds":5}}`)
	if out, err := h.kubectlStdin(bad, "apply", "--dry-run=server", "-f", "-"); err == nil || !strings.Contains(out, "applies only with type RevisionBased") {
		t.Errorf("a grace period with InPlace: err %v, output %s", err, out)
	}

	const grace = 3
	spec := func(v string) string {
		return fmt.Sprintf(`{"version":%q,"security":{"selfSigned":true},"updateStrategy":{"type":"RevisionBased","inactiveRevisionDeletionGracePeriodSeconds":%d}}`, v, grace)
	}
	h.applyIstio(ns, "istio", spec("1.29.6"))
	h.waitCondition("istio", v1beta1.ConditionControlPlaneDeployed, metav1.ConditionTrue)
	h.rollOut("istiod-1-29-6")
	ist := h.waitPhase("istio", v1beta1.PhaseReady)
	if got := revs(ist); got != "1-29-6(1.29.6,default,pods=0)" {
		t.Errorf("status.revisions after install = %s", got)
	}
	h.noObject(&appsv1.Deployment{}, ns, "istiod")
	h.tagTarget("1-29-6")

	// A workload the old revision injected: the injector's own record.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "apps",
			Annotations: map[string]string{"sidecar.istio.io/status": `{"revision":"1-29-6"}`}},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "apps"}}
	if err := h.direct.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := h.direct.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}

	h.applyIstio(ns, "istio", spec("1.30.3"))
	h.waitCondition("istio", v1beta1.ConditionControlPlaneDeployed, metav1.ConditionTrue)
	for _, d := range []string{"istiod-1-29-6", "istiod-1-30-3"} {
		h.apiGet(client.ObjectKey{Namespace: ns, Name: d}, &appsv1.Deployment{})
	}
	// The new istiod has not rolled out: the tag stays on the old revision.
	ist = h.istio("istio")
	if got := revs(ist); got != "1-29-6(1.29.6,default,pods=1) 1-30-3(1.30.3,pods=0)" {
		t.Errorf("status.revisions before the new istiod is ready = %s", got)
	}
	h.tagTarget("1-29-6")

	h.rollOut("istiod-1-30-3")
	eventually(t, "the default tag on 1-30-3", func() error {
		ist = h.istio("istio")
		if got := revs(ist); got != "1-29-6(1.29.6,pods=1) 1-30-3(1.30.3,default,pods=0)" {
			return fmt.Errorf("status.revisions = %s", got)
		}
		return nil
	})
	h.waitPhase("istio", v1beta1.PhaseReady)
	h.tagTarget("1-30-3")
	var since time.Time
	for _, r := range ist.Status.Revisions {
		if r.Name == "1-29-6" {
			if !r.InUse || r.InactiveSince == nil {
				t.Fatalf("old revision %+v: want in use, with inactiveSince", r)
			}
			since = r.InactiveSince.Time
			t.Logf("old revision: %s", r.Message)
		}
	}

	// Past the grace period (and a pod recheck), the pod still keeps it.
	eventually(t, "the grace period and a pod recheck to pass", func() error {
		if left := time.Until(since.Add(grace*time.Second + 6*time.Second)); left > 0 {
			return fmt.Errorf("%v left", left)
		}
		return nil
	})
	h.apiGet(client.ObjectKey{Namespace: ns, Name: "istiod-1-29-6"}, &appsv1.Deployment{})
	if got := revs(h.istio("istio")); got != "1-29-6(1.29.6,pods=1) 1-30-3(1.30.3,default,pods=0)" {
		t.Errorf("status.revisions while a pod uses the old revision = %s", got)
	}

	start := time.Now()
	if err := h.direct.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the old revision removed", func() error {
		d := &appsv1.Deployment{}
		if err := h.direct.Get(ctx, client.ObjectKey{Namespace: ns, Name: "istiod-1-29-6"}, d); !apierrors.IsNotFound(err) {
			return fmt.Errorf("istiod-1-29-6 still there (%v)", err)
		}
		if got := revs(h.istio("istio")); got != "1-30-3(1.30.3,default,pods=0)" {
			return fmt.Errorf("status.revisions = %s", got)
		}
		return nil
	})
	t.Logf("old revision removed %v after its last pod went", time.Since(start).Round(time.Millisecond))
	h.apiGet(client.ObjectKey{Namespace: ns, Name: "istiod-1-30-3"}, &appsv1.Deployment{})
	wh := &unstructured.Unstructured{}
	wh.SetAPIVersion("admissionregistration.k8s.io/v1")
	wh.SetKind("MutatingWebhookConfiguration")
	h.noObject(wh, "", "istio-sidecar-injector-1-29-6")
	h.waitPhase("istio", v1beta1.PhaseReady)

	// A named tag points at an installed revision (its webhook and Service
	// are rendered, status shows it); one pointing at none is refused.
	h.applyIstio(ns, "istio", `{"version":"1.30.3","security":{"selfSigned":true},"updateStrategy":{"type":"RevisionBased","revisionTags":[{"name":"stable","revision":"1-30-3"}]}}`)
	eventually(t, "the stable tag rendered", func() error {
		wh := &unstructured.Unstructured{}
		wh.SetAPIVersion("admissionregistration.k8s.io/v1")
		wh.SetKind("MutatingWebhookConfiguration")
		if err := h.direct.Get(ctx, client.ObjectKey{Name: "istio-revision-tag-stable"}, wh); err != nil {
			return err
		}
		if got := h.istio("istio").Status.Revisions; len(got) != 1 || strings.Join(got[0].Tags, ",") != "stable" {
			return fmt.Errorf("status.revisions %+v", got)
		}
		return nil
	})
	h.applyIstio(ns, "istio", `{"version":"1.30.3","security":{"selfSigned":true},"updateStrategy":{"type":"RevisionBased","revisionTags":[{"name":"stable","revision":"1.29.6"}]}}`)
	eventually(t, "a tag on a removed revision refused", func() error {
		ist := h.istio("istio")
		c := meta.FindStatusCondition(ist.Status.Conditions, v1beta1.ConditionPreCheckPassed)
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "spec.updateStrategy.revisionTags[0].revision") {
			return fmt.Errorf("conditions: %s", formatConditions(ist.Status.Conditions))
		}
		return nil
	})
	h.apiGet(client.ObjectKey{Namespace: ns, Name: "istiod-1-30-3"}, &appsv1.Deployment{})
}

// revs formats status.revisions as name(version,default,pods=n) in order.
func revs(ist *v1beta1.Istio) string {
	s := ""
	for i, r := range ist.Status.Revisions {
		if i > 0 {
			s += " "
		}
		d := ""
		if r.Default {
			d = ",default"
		}
		s += fmt.Sprintf("%s(%s%s,pods=%d)", r.Name, r.Version, d, r.Pods)
	}
	return s
}

// tagTarget checks that the default tag's injection webhook calls rev's istiod.
func (h *harness) tagTarget(rev string) {
	h.t.Helper()
	wh := h.getU("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "istio-revision-tag-default")
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	if len(hooks) == 0 {
		h.t.Fatal("tag webhook has no webhooks")
	}
	svc, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "service", "name")
	if want := "istiod-" + rev; svc != want {
		h.t.Errorf("default tag webhook calls Service %q, want %q", svc, want)
	}
}

func (h *harness) noObject(obj client.Object, namespace, name string) {
	h.t.Helper()
	if err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); !apierrors.IsNotFound(err) {
		h.t.Errorf("%T %s/%s: want NotFound, got %v", obj, namespace, name, err)
	}
}
