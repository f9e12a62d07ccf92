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
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestOwnership tries, against a real kube-apiserver, to make the operator
// take over or delete objects it did not create, and to install a second
// mesh in the same cluster.
func TestOwnership(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	ctx := t.Context()
	h := &harness{t: t, env: env, ctx: ctx}
	cfg := env.Cluster("primary").Config
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	if h.direct, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}

	// What the cluster holds before meshfleet comes: Istio's CRDs, a user's
	// plug-in CA, a user's STRICT mesh-wide policy, a user's ConfigMap that
	// carries meshfleet's labels, and another mesh's istiod.
	applyCRDs(t, env, "primary")
	h.kubectl("apply", "--server-side", "-f", repoPath("manifests/charts/istio/1.31/base/files/crd-all.gen.yaml"))
	for _, n := range []string{ns, "other-mesh", "tenant"} {
		h.kubectl("create", "namespace", n)
	}
	h.kubectl("-n", ns, "create", "secret", "generic", "cacerts",
		"--from-literal=ca-cert.pem=USER-CA", "--from-literal=ca-key.pem=USER-KEY",
		"--from-literal=root-cert.pem=USER-ROOT", "--from-literal=cert-chain.pem=USER-CHAIN")
	h.kubectlIn(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-system"},"spec":{"mtls":{"mode":"STRICT"}}}`)
	h.kubectlIn(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"user-settings","namespace":"istio-system","labels":{%q:%q,%q:"Istio",%q:"istio",%q:"istio-system"}},"data":{"keep":"me"}}`,
		render.LabelManagedBy, render.ManagedByValue, render.LabelOwnerKind, render.LabelOwnerName, render.LabelOwnerNamespace))
	h.kubectlIn(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"istiod","namespace":"other-mesh","labels":{"app":"istiod","app.kubernetes.io/managed-by":"Helm"}},
		"spec":{"selector":{"matchLabels":{"app":"istiod"}},"template":{"metadata":{"labels":{"app":"istiod"}},"spec":{"containers":[{"name":"discovery","image":"docker.io/istio/pilot:1.29.0"}]}}}}`)
	userObjs := []*unstructured.Unstructured{
		h.getU("v1", "Secret", ns, "cacerts"),
		h.getU("security.istio.io/v1", "PeerAuthentication", ns, "default"),
		h.getU("v1", "ConfigMap", ns, "user-settings"),
	}

	mgr := framework.StartOperator(t, cfg, operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: time.Hour})
	h.c = mgr.GetClient()
	h.applyIstio(ns, "istio", `{"version":"1.30.3"}`)

	t.Run("an istiod of another mesh in another namespace is a conflict", func(t *testing.T) {
		c, _ := h.settled("istio", v1beta1.ConditionPreCheckPassed, "")
		if c.Status != metav1.ConditionFalse || c.Reason != v1beta1.ReasonConflict || !strings.Contains(c.Message, "other-mesh/istiod") || !strings.Contains(c.Message, "uninstall that control plane") {
			t.Errorf("PreCheckPassed: %s: %s", c.Reason, c.Message)
		}
		t.Logf("%s: %s", c.Reason, c.Message)
		h.kubectl("-n", "other-mesh", "delete", "deployment", "istiod")
		h.resync("istio")
	})

	t.Run("a user's cacerts and STRICT PeerAuthentication are not taken over", func(t *testing.T) {
		c, ist := h.settled("istio", v1beta1.ConditionControlPlaneDeployed, "")
		for _, want := range []string{"Secret/istio-system/cacerts", "PeerAuthentication/istio-system/default", "meshfleet.io/adopt=true", "nothing was changed"} {
			if c.Reason != v1beta1.ReasonNotOwned || !strings.Contains(c.Message, want) {
				t.Errorf("ControlPlaneDeployed %s: %q does not say %q", c.Reason, c.Message, want)
			}
		}
		if ist.Status.Phase != v1beta1.PhaseFailed {
			t.Errorf("phase %s, want Failed", ist.Status.Phase)
		}
		t.Logf("%s: %s", c.Reason, c.Message)
		h.resync("istio")
		h.resync("istio")
		h.quiesce()
		for _, before := range userObjs {
			after, err := h.tryGetU(before)
			if err != nil {
				t.Errorf("%s %s: %v", before.GetKind(), before.GetName(), err)
				continue
			}
			if after.GetResourceVersion() != before.GetResourceVersion() || !sameContent(before, after) {
				t.Errorf("%s %s changed after install and two resyncs:\nbefore %v\nafter  %v", before.GetKind(), before.GetName(), before.Object, after.Object)
			}
		}
	})

	t.Run("an object is adopted only with the annotation", func(t *testing.T) {
		// The user hands the policy over and moves the plug-in CA away.
		h.kubectl("-n", ns, "annotate", "peerauthentication", "default", "meshfleet.io/adopt=true")
		h.kubectl("-n", ns, "delete", "secret", "cacerts")
		h.resync("istio")
		h.waitCondition("istio", v1beta1.ConditionControlPlaneDeployed, metav1.ConditionTrue)
		pa := h.getU("security.istio.io/v1", "PeerAuthentication", ns, "default")
		if mode, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode"); mode != "PERMISSIVE" {
			t.Errorf("adopted PeerAuthentication mode %s, want PERMISSIVE", mode)
		}
		if cm, err := h.tryGetU(userObjs[2]); err != nil || cm.GetResourceVersion() != userObjs[2].GetResourceVersion() {
			t.Errorf("user's ConfigMap with meshfleet's labels was changed or deleted by the install: %v", err)
		}
	})

	t.Run("a second Istio in another namespace is refused", func(t *testing.T) {
		h.applyIstio("tenant", "istio", `{"version":"1.30.3"}`)
		c, _ := h.settled("tenant/istio", v1beta1.ConditionPreCheckPassed, "")
		if c.Status != metav1.ConditionFalse || c.Reason != v1beta1.ReasonConflict || !strings.Contains(c.Message, "Istio istio-system/istio already manages the control plane of this cluster") {
			t.Errorf("PreCheckPassed: %s: %s", c.Reason, c.Message)
		}
	})

	t.Run("the first Istio still holds the cluster while it is being deleted", func(t *testing.T) {
		before, _ := h.settled("tenant/istio", v1beta1.ConditionPreCheckPassed, "")
		h.kubectl("-n", ns, "patch", "istio", "istio", "--type=json", "-p", `[{"op":"add","path":"/metadata/finalizers/-","value":"test/hold"}]`)
		h.kubectl("-n", ns, "delete", "istio", "istio", "--wait=false")
		eventually(h.t, "the control plane uninstalled", func() error {
			err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod"}, &appsv1.Deployment{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("istiod still there: %v", err)
			}
			return nil
		})
		h.kubectl("-n", "tenant", "annotate", "--overwrite", "istio", "istio", fmt.Sprintf("test/resync=%d", time.Now().UnixNano()))
		c, _ := h.settled("tenant/istio", v1beta1.ConditionPreCheckPassed, before.Message)
		if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "Istio istio-system/istio holds the control plane of this cluster and is being uninstalled") {
			t.Errorf("tenant's PreCheckPassed while istio-system/istio is deleting: %s %s: %s", c.Status, c.Reason, c.Message)
		}
		if err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: "tenant", Name: "istiod"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("a second control plane was installed in tenant: %v", err)
		}
	})

	t.Run("uninstall leaves a user's object that carries meshfleet's labels", func(t *testing.T) {
		cm := &corev1.ConfigMap{}
		if err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "user-settings"}, cm); err != nil || cm.DeletionTimestamp != nil || cm.Data["keep"] != "me" {
			t.Errorf("user's ConfigMap deleted or changed: %v %+v", err, cm)
		}
		h.kubectl("-n", ns, "patch", "istio", "istio", "--type=json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`)
	})
}

// settled waits until the condition has been decided (True or False) for
// the current generation, with a message other than previous, and returns it.
func (h *harness) settled(ref, condType, previous string) (*metav1.Condition, *v1beta1.Istio) {
	h.t.Helper()
	var c *metav1.Condition
	var ist *v1beta1.Istio
	eventually(h.t, fmt.Sprintf("Istio %s %s decided", ref, condType), func() error {
		ist = h.istio(ref)
		c = meta.FindStatusCondition(ist.Status.Conditions, condType)
		if c == nil || c.Status == metav1.ConditionUnknown || c.Message == previous || ist.Status.ObservedGeneration != ist.Generation {
			return fmt.Errorf("conditions: %s", formatConditions(ist.Status.Conditions))
		}
		return nil
	})
	return c, ist
}

// sameContent compares what a user wrote: data, spec, labels, annotations.
func sameContent(a, b *unstructured.Unstructured) bool {
	for _, f := range [][]string{{"data"}, {"spec"}, {"metadata", "labels"}, {"metadata", "annotations"}} {
		va, _, _ := unstructured.NestedFieldNoCopy(a.Object, f...)
		vb, _, _ := unstructured.NestedFieldNoCopy(b.Object, f...)
		if fmt.Sprint(va) != fmt.Sprint(vb) {
			return false
		}
	}
	return true
}

// tryGetU reads the live copy of o straight from the API server.
func (h *harness) tryGetU(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(o.GroupVersionKind())
	return u, h.direct.Get(h.ctx, client.ObjectKeyFromObject(o), u)
}

// kubectlIn creates an object from JSON with the real kubectl, as a user would.
func (h *harness) kubectlIn(obj string) {
	h.t.Helper()
	if out, err := h.kubectlStdin(obj, "create", "-f", "-"); err != nil {
		h.t.Fatalf("kubectl create: %v\n%s", err, out)
	}
}
