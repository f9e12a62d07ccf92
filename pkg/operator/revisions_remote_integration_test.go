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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestRevisionBasedUpgradeWithRemote: a RevisionBased control plane with a
// remote joined. The remote gets a revisioned injection webhook per
// revision, calling istiod-<rev> on the remote path, a Service istiod-<rev>
// leading to the primary and the default tag's webhook on the tag's
// revision, which moves with the tag; a named tag reaches the remote too.
// Pods of the remote are counted per revision in the Istio status, and the
// old revision stays, in both clusters, while a remote pod uses it.
func TestRevisionBasedUpgradeWithRemote(t *testing.T) {
	h, rh := startRevisionMesh(t, "remote1")
	rh.kubectl("remote1", "create", "namespace", "legacy")

	const grace = 2
	spec := func(v, tags string) string {
		return fmt.Sprintf(`{"version":%q,"clusterName":"primary","security":{"selfSigned":true},"multiCluster":{"mode":"flatNetwork"},
			"updateStrategy":{"type":"RevisionBased","inactiveRevisionDeletionGracePeriodSeconds":%d%s}}`, v, grace, tags)
	}
	h.applyIstio(ns, "istio", spec("1.29.6", ""))
	rh.apply(`{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":"remote1","namespace":"istio-system"},
		"spec":{"kubeconfigSecretRef":{"name":"remote1-kubeconfig"},"autoInjectionNamespaces":["apps"],"pilotAddress":"203.0.113.10"}}`)
	h.waitCondition("istio", v1beta1.ConditionControlPlaneDeployed, metav1.ConditionTrue)
	h.rollOut("istiod-1-29-6")
	h.waitPhase("istio", v1beta1.PhaseReady)
	rh.waitRemote("remote1", v1beta1.ConditionReady, metav1.ConditionTrue)
	remoteHooks(t, rh, map[string]string{"istio-sidecar-injector-1-29-6": "istiod-1-29-6", "istio-revision-tag-default": "istiod-1-29-6"})

	// A workload in the remote that the old revision injected (created in a
	// namespace no webhook selects: the webhooks would call the primary's
	// istiod at the pilot address, which nothing serves here).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "legacy",
			Annotations: map[string]string{"sidecar.istio.io/status": `{"revision":"1-29-6"}`}},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
	}
	rc := rh.clients["remote1"]
	if err := rc.Create(h.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "legacy"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := rc.Create(h.ctx, pod); err != nil {
		t.Fatal(err)
	}

	h.applyIstio(ns, "istio", spec("1.30.3", ""))
	h.waitCondition("istio", v1beta1.ConditionControlPlaneDeployed, metav1.ConditionTrue)
	h.rollOut("istiod-1-30-3")
	eventually(t, "the default tag on 1-30-3, the remote's pod counted on 1-29-6", func() error {
		if got := revsClusters(h.istio("istio")); got != "1-29-6(1.29.6,pods=1[remote1=1]) 1-30-3(1.30.3,default,pods=0[])" {
			return fmt.Errorf("status.revisions = %s", got)
		}
		return nil
	})
	eventually(t, "the remote's webhooks on both revisions, the tag on 1-30-3", func() error {
		return checkRemoteHooks(rh, map[string]string{
			"istio-sidecar-injector-1-29-6": "istiod-1-29-6",
			"istio-sidecar-injector-1-30-3": "istiod-1-30-3",
			"istio-revision-tag-default":    "istiod-1-30-3",
		})
	})
	for _, s := range []string{"istiod-1-29-6", "istiod-1-30-3", "istiod-revision-tag-default"} {
		svc := &corev1.Service{}
		rh.get("remote1", ns, s, svc)
		if len(svc.Spec.Selector) > 0 {
			t.Errorf("remote Service %s selects %v; it must lead to the primary", s, svc.Spec.Selector)
		}
	}
	var since time.Time
	for _, r := range h.istio("istio").Status.Revisions {
		if r.Name == "1-29-6" && r.InactiveSince != nil {
			since = r.InactiveSince.Time
			t.Logf("old revision: %s", r.Message)
		}
	}
	eventually(t, "the grace period and a pod recheck to pass", func() error {
		if left := time.Until(since.Add(grace*time.Second + 6*time.Second)); left > 0 {
			return fmt.Errorf("%v left", left)
		}
		return nil
	})
	h.apiGet(client.ObjectKey{Namespace: ns, Name: "istiod-1-29-6"}, &appsv1.Deployment{})
	if err := checkRemoteHooks(rh, map[string]string{"istio-sidecar-injector-1-29-6": "istiod-1-29-6"}); err != nil {
		t.Errorf("old revision's webhook left the remote while a remote pod uses it: %v", err)
	}

	// A named tag reaches the remote: namespaces labelled istio.io/rev=stable.
	h.applyIstio(ns, "istio", spec("1.30.3", `,"revisionTags":[{"name":"stable","revision":"1.30.3"}]`))
	eventually(t, "the stable tag's webhook in the remote", func() error {
		return checkRemoteHooks(rh, map[string]string{"istio-revision-tag-stable": "istiod-1-30-3"})
	})
	if got := h.istio("istio").Status.Revisions; len(got) != 2 || strings.Join(got[1].Tags, ",") != "stable" {
		t.Errorf("status.revisions does not show the stable tag on 1-30-3: %+v", got)
	}

	start := time.Now()
	if err := rc.Delete(h.ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the old revision removed from both clusters", func() error {
		if err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod-1-29-6"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("istiod-1-29-6 still in the primary (%v)", err)
		}
		wh := &unstructured.Unstructured{}
		wh.SetAPIVersion("admissionregistration.k8s.io/v1")
		wh.SetKind("MutatingWebhookConfiguration")
		if err := rc.Get(h.ctx, client.ObjectKey{Name: "istio-sidecar-injector-1-29-6"}, wh); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the old revision's webhook still in the remote (%v)", err)
		}
		if err := rc.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod-1-29-6"}, &corev1.Service{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service istiod-1-29-6 still in the remote (%v)", err)
		}
		if got := revsClusters(h.istio("istio")); got != "1-30-3(1.30.3,default,pods=0[])" {
			return fmt.Errorf("status.revisions = %s", got)
		}
		return nil
	})
	t.Logf("old revision removed from both clusters %v after the remote's last pod on it went", time.Since(start).Round(time.Millisecond))
}

// revsClusters formats status.revisions with the pods per cluster.
func revsClusters(ist *v1beta1.Istio) string {
	s := ""
	for i, r := range ist.Status.Revisions {
		if i > 0 {
			s += " "
		}
		d := ""
		if r.Default {
			d = ",default"
		}
		var cs []string
		for _, c := range r.Clusters {
			cs = append(cs, fmt.Sprintf("%s=%d", c.Cluster, c.Pods))
		}
		s += fmt.Sprintf("%s(%s%s,pods=%d[%s])", r.Name, r.Version, d, r.Pods, strings.Join(cs, ","))
	}
	return s
}

// remoteHooks checks the remote's injection webhooks at once.
func remoteHooks(t *testing.T, rh *remoteHarness, want map[string]string) {
	t.Helper()
	if err := checkRemoteHooks(rh, want); err != nil {
		t.Error(err)
	}
}

// checkRemoteHooks checks that each webhook in remote1 calls the Service
// named, on the remote injection path of remote1.
func checkRemoteHooks(rh *remoteHarness, want map[string]string) error {
	for name, svc := range want {
		wh := &unstructured.Unstructured{}
		wh.SetAPIVersion("admissionregistration.k8s.io/v1")
		wh.SetKind("MutatingWebhookConfiguration")
		if err := rh.clients["remote1"].Get(rh.ctx, client.ObjectKey{Name: name}, wh); err != nil {
			return fmt.Errorf("webhook %s in remote1: %w", name, err)
		}
		hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
		if len(hooks) == 0 {
			return fmt.Errorf("webhook %s has no webhooks", name)
		}
		for _, hk := range hooks {
			got, _, _ := unstructured.NestedString(hk.(map[string]any), "clientConfig", "service", "name")
			path, _, _ := unstructured.NestedString(hk.(map[string]any), "clientConfig", "service", "path")
			if got != svc || path != "/inject/cluster/remote1/net/" {
				return fmt.Errorf("webhook %s calls %s%s, want %s/inject/cluster/remote1/net/", name, got, path, svc)
			}
		}
	}
	return nil
}

// startRevisionMesh runs the primary and the remotes on real kube-apiservers
// with the CRDs, each remote's "apps" namespace and its kubeconfig Secret,
// and the operator (framework.StartOperator): the bring-up of the
// RevisionBased tests with remotes.
func startRevisionMesh(t *testing.T, remotes ...string) (*harness, *remoteHarness) {
	t.Helper()
	clusters := []localcluster.ClusterOptions{{Name: "primary"}}
	for _, r := range remotes {
		clusters = append(clusters, localcluster.ClusterOptions{Name: r})
	}
	env := testenv.Start(t, clusters...)
	ctx := testenv.Context(t)
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	rh := &remoteHarness{t: t, env: env, ctx: ctx, clients: map[string]client.Client{}}
	for name, c := range env.Clusters {
		if rh.clients[name], err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, env: env, ctx: ctx, direct: rh.clients["primary"]}
	applyCRDs(t, env, "primary")
	rh.kubectl("primary", "create", "namespace", ns)
	for _, r := range remotes {
		rh.kubectl(r, "create", "namespace", "apps")
		rh.kubeconfigSecret(r+"-kubeconfig", env.Cluster(r).Kubeconfig)
	}
	h.c = framework.StartOperator(t, env.Cluster("primary").Config,
		operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: time.Hour, RemoteResync: time.Hour}).GetClient()
	return h, rh
}
