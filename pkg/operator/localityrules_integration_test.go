//go:build integration

package operator_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// localityRules are DestinationRules in the control plane's namespace as the
// locality server and users leave them before an uninstall.
type localityRules struct {
	// generated were written as the locality server writes them (one in
	// a user's namespace, beside a user's rule with subsets only).
	generated []client.ObjectKey
	// users' rules, by name, with their resourceVersion.
	users map[string]string
}

func destinationRule(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"spec": map[string]any{"host": strings.Split(name, ".")[len(strings.Split(name, "."))-1] + ".svc.cluster.local"},
	}}
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

// writeLocalityRules writes two rules the way the locality server does
// (created under its field manager; one also updated by server-side apply,
// forced) and three users' rules with the real kubectl that look like them:
// label and generated name, generated name only, label only.
func (h *harness) writeLocalityRules(t *testing.T) localityRules {
	ours := map[string]string{locality.LabelManagedBy: locality.ManagedBy}
	rules := localityRules{users: map[string]string{}}
	for _, key := range []client.ObjectKey{
		{Namespace: ns, Name: locality.RuleName("default", "reviews")},
		{Namespace: ns, Name: locality.RuleName("default", "ratings")},
		{Namespace: "default", Name: locality.RuleName("default", "podinfo-primary")},
	} {
		u := destinationRule(key.Name, ours)
		u.SetNamespace(key.Namespace)
		if err := h.direct.Create(h.ctx, u, client.FieldOwner(rulesync.FieldManager)); err != nil {
			t.Fatal(err)
		}
		rules.generated = append(rules.generated, key)
	}
	upd := destinationRule(rules.generated[1].Name, ours)
	upd.Object["spec"].(map[string]any)["trafficPolicy"] = map[string]any{"outlierDetection": map[string]any{"consecutive5xxErrors": int64(7)}}
	if err := h.direct.Apply(h.ctx, client.ApplyConfigurationFromUnstructured(upd), client.FieldOwner(rulesync.FieldManager), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*unstructured.Unstructured{
		destinationRule(locality.RuleName("default", "details"), ours),
		destinationRule(locality.RuleName("default", "productpage"), nil),
		destinationRule("users-rule.default", ours),
	} {
		b, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if out, err := h.kubectlStdin(string(b), "create", "-f", "-"); err != nil {
			t.Fatalf("kubectl create: %v\n%s", err, out)
		}
		live := h.getU("networking.istio.io/v1", "DestinationRule", ns, u.GetName())
		rules.users[u.GetName()] = live.GetResourceVersion()
	}
	return rules
}

// expectLocalityRules checks that the generated rules are gone (or, with
// kept, still there) and the users' rules untouched.
func (h *harness) expectLocalityRules(t *testing.T, rules localityRules, kept bool) {
	t.Helper()
	for _, name := range rules.generated {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule"}}
		err := h.direct.Get(h.ctx, name, u)
		switch {
		case kept && err != nil:
			t.Errorf("generated DestinationRule %s deleted while the locality server may still run: %v", name, err)
		case !kept && !apierrors.IsNotFound(err):
			t.Errorf("generated DestinationRule %s left after uninstall: %v", name, err)
		}
	}
	for name, rv := range rules.users {
		if got := h.getU("networking.istio.io/v1", "DestinationRule", ns, name).GetResourceVersion(); got != rv {
			t.Errorf("user's DestinationRule %s changed (resourceVersion %s → %s)", name, rv, got)
		}
	}
}

// localityServerPod stands for a pod of the locality server still running
// (nothing runs pods here): the uninstall leaves the rules until it is gone.
func (h *harness) localityServerPod(t *testing.T) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.LocalityServerName + "-0", Labels: map[string]string{"app": render.LocalityServerName}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "locality", Image: "meshfleet"}}}}
	// No kube-controller-manager here: the ServiceAccount admission needs "default".
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	if err := h.direct.Create(h.ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := h.direct.Create(h.ctx, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *harness) expectHeldForLocalityServer(t *testing.T) {
	t.Helper()
	eventually(h.t, "uninstall waits for the locality server's pod", func() error {
		c := meta.FindStatusCondition(h.istio("istio").Status.Conditions, v1beta1.ConditionReady)
		if c == nil || c.Reason != v1beta1.ReasonDeleting || !strings.Contains(c.Message, "locality server") {
			return fmt.Errorf("Ready condition %+v", c)
		}
		return nil
	})
}
