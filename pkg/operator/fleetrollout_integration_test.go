//go:build integration

package operator_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestFleetRollout: a primary and two remotes, spec.updateStrategy.rollout
// with batches canary=[remote1] then wave-1=[remote2] (the primary, in no
// batch, moves when every batch passed); wave-1 chooses remote2 by its
// RemoteIstio's label (clusterSelector). A new revision whose istiod never
// rolls out moves remote1's default tag, is moved back there after the
// gate's timeout, and remote2's tag never moves; a healthy revision moves
// the batches in order and then the primary.
func TestFleetRollout(t *testing.T) {
	remotes := []string{"remote1", "remote2"}
	h, rh := startRevisionMesh(t, remotes...)

	// The canary must be seen moved (remote1 rendered) before the timeout
	// moves it back: 15 s was too short on loaded cores.
	const timeout = 45
	spec := func(v string) string {
		return fmt.Sprintf(`{"version":%q,"clusterName":"primary","security":{"selfSigned":true},"multiCluster":{"mode":"flatNetwork"},
			"updateStrategy":{"type":"RevisionBased","inactiveRevisionDeletionGracePeriodSeconds":1,
			"rollout":{"batches":[{"name":"canary","clusters":["remote1"]},{"name":"wave-1","clusterSelector":{"matchLabels":{"wave":"1"}}}],
			"gate":{"bakeSeconds":2,"timeoutSeconds":%d}}}}`, v, timeout)
	}
	installFleet(h, rh, spec("1.29.6"), remotes)
	tags := func(want map[string]string) func() error { return func() error { return defaultTags(rh, want) } }
	eventually(t, "every cluster's default tag on 1-29-6", tags(map[string]string{"primary": "istiod-1-29-6", "remote1": "istiod-1-29-6", "remote2": "istiod-1-29-6"}))

	// A bad revision: istiod-1-30-3 is deployed but never ready.
	h.applyIstio(ns, "istio", spec("1.30.3"))
	eventually(t, "the canary batch moved: remote1's default tag on 1-30-3, the others on 1-29-6", func() error {
		if st := h.istio("istio").Status.Rollout; st == nil || len(st.Batches) != 2 || st.Batches[0].Phase != "Gating" || strings.Join(st.Batches[1].Clusters, ",") != "remote2" {
			return fmt.Errorf("status.rollout = %+v", st)
		}
		return tags(map[string]string{"primary": "istiod-1-29-6", "remote1": "istiod-1-30-3", "remote2": "istiod-1-29-6"})()
	})
	eventually(t, "the canary rolled back after the gate's timeout, the rollout halted", func() error {
		st := h.istio("istio").Status.Rollout
		if st == nil || st.Phase != "Halted" || st.Batches[0].Phase != "RolledBack" || st.Batches[1].Phase != "Pending" || st.Batches[1].MovedAt != nil {
			return fmt.Errorf("status.rollout = %+v", st)
		}
		return tags(map[string]string{"primary": "istiod-1-29-6", "remote1": "istiod-1-29-6", "remote2": "istiod-1-29-6"})()
	})
	st := h.istio("istio").Status.Rollout
	if took := st.Batches[0].DecidedAt.Sub(st.Batches[0].MovedAt.Time); took < timeout*time.Second {
		t.Errorf("canary rolled back after %v, before the gate's timeout %ds", took, timeout)
	}
	t.Logf("bad revision:\n%s", tagrollout.StatusTable(st))
	if got := revsClusters(h.istio("istio")); got != "1-29-6(1.29.6,default,pods=0[]) 1-30-3(1.30.3,pods=0[])" {
		t.Errorf("status.revisions = %s; the default tag must stay on 1-29-6", got)
	}

	// Back to 1.29.6: the halted rollout ends, the bad revision is pruned.
	h.applyIstio(ns, "istio", spec("1.29.6"))
	eventually(t, "istiod-1-30-3 removed", func() error {
		if err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod-1-30-3"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("istiod-1-30-3 still there (%v)", err)
		}
		return nil
	})

	// A healthy revision: every batch in order, then the primary.
	h.applyIstio(ns, "istio", spec("1.30.3"))
	eventually(t, "istiod-1-30-3 deployed", func() error {
		return h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod-1-30-3"}, &appsv1.Deployment{})
	})
	h.rollOut("istiod-1-30-3")
	eventually(t, "every batch passed, every cluster's default tag on 1-30-3", func() error {
		st := h.istio("istio").Status.Rollout
		if st == nil || st.Phase != "Done" || st.To != "1-30-3" {
			return fmt.Errorf("status.rollout = %+v", st)
		}
		return tags(map[string]string{"primary": "istiod-1-30-3", "remote1": "istiod-1-30-3", "remote2": "istiod-1-30-3"})()
	})
	st = h.istio("istio").Status.Rollout
	t.Logf("healthy revision:\n%s", tagrollout.StatusTable(st))
	c, w := st.Batches[0], st.Batches[1]
	if c.Phase != "Passed" || w.Phase != "Passed" || w.MovedAt.Before(c.DecidedAt) {
		t.Errorf("batches not passed in order: %+v", st.Batches)
	}
	if c.DecidedAt.Sub(c.MovedAt.Time) < 2*time.Second {
		t.Errorf("canary passed before the bake time: %+v", c)
	}
}

// defaultTagService is the Service the default tag's webhook calls in a
// cluster, "" when there is none.
func defaultTagService(rh *remoteHarness, cluster string) string {
	wh := &unstructured.Unstructured{}
	wh.SetAPIVersion("admissionregistration.k8s.io/v1")
	wh.SetKind("MutatingWebhookConfiguration")
	if err := rh.clients[cluster].Get(rh.ctx, client.ObjectKey{Name: "istio-revision-tag-default"}, wh); err != nil {
		return ""
	}
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	if len(hooks) == 0 {
		return ""
	}
	svc, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "service", "name")
	return svc
}

// TestFleetRolloutRefusedFields: bad gate fields, clusterSelector and a
// rollout without RevisionBased are refused by the CRD with a message, not
// accepted and ignored.
func TestFleetRolloutRefusedFields(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	ctx := testenv.Context(t)
	rh := &remoteHarness{t: t, env: env, ctx: ctx, clients: map[string]client.Client{}}
	applyCRDs(t, env, "primary")
	rh.kubectl("primary", "create", "namespace", ns)
	c, err := client.New(env.Cluster("primary").Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for field, tc := range map[string]struct{ strategy, want string }{
		"minRequests with a query": {`"type":"RevisionBased","rollout":{"batches":[{"name":"a","clusters":["x"]}],"gate":{"timeoutSeconds":60,"prometheus":{"address":"http://p:9090","query":"sum(x)","minSuccessRate":"0.99","minRequests":5}}}`,
			"minRequests applies to the default query only"},
		"minSuccessRate": {`"type":"RevisionBased","rollout":{"batches":[{"name":"a","clusters":["x"]}],"gate":{"timeoutSeconds":60,"prometheus":{"address":"http://p:9090","minSuccessRate":"99%"}}}`,
			"spec.updateStrategy.rollout.gate.prometheus.minSuccessRate"},
		"address": {`"type":"RevisionBased","rollout":{"batches":[{"name":"a","clusters":["x"]}],"gate":{"timeoutSeconds":60,"prometheus":{"address":"prometheus:9090","minSuccessRate":"0.99"}}}`,
			"spec.updateStrategy.rollout.gate.prometheus.address"},
		"no clusters": {`"type":"RevisionBased","rollout":{"batches":[{"name":"a","clusters":[]}],"gate":{"timeoutSeconds":60}}`,
			"a batch needs clusters or a clusterSelector"},
		"InPlace": {`"type":"InPlace","rollout":{"batches":[{"name":"a","clusters":["x"]}],"gate":{"timeoutSeconds":60}}`,
			"rollout applies only with type RevisionBased"},
		"xds minProxies": {`"type":"RevisionBased","rollout":{"batches":[{"name":"a","clusters":["x"]}],"gate":{"timeoutSeconds":60,"xds":{"minProxies":-1}}}`,
			"spec.updateStrategy.rollout.gate.xds.minProxies"},
		"bake": {`"type":"RevisionBased","rollout":{"batches":[{"name":"a","clusters":["x"]}],"gate":{"timeoutSeconds":60,"bakeSeconds":60}}`,
			"bakeSeconds must be shorter than timeoutSeconds"},
	} {
		obj := fmt.Sprintf(`{"apiVersion":"meshfleet.io/v1beta1","kind":"Istio","metadata":{"name":"istio","namespace":%q},"spec":{"version":"1.30.3","updateStrategy":{%s}}}`, ns, tc.strategy)
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(obj)); err != nil {
			t.Fatal(err)
		}
		err := c.Create(ctx, u, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", field, err, tc.want)
		}
	}
}

// installFleet applies the Istio resource with spec (its version
// 1.29.6), joins each remote with a RemoteIstio labelled wave=<its index>,
// and waits for the control plane to be Ready with istiod-1-29-6 rolled out.
func installFleet(h *harness, rh *remoteHarness, spec string, remotes []string) {
	h.t.Helper()
	h.applyIstio(ns, "istio", spec)
	for i, r := range remotes {
		rh.apply(fmt.Sprintf(`{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":%q,"namespace":"istio-system","labels":{"wave":"%d"}},
		"spec":{"kubeconfigSecretRef":{"name":"%s-kubeconfig"},"autoInjectionNamespaces":["apps"],"pilotAddress":"203.0.113.10"}}`, r, i, r))
	}
	h.waitCondition("istio", v1beta1.ConditionControlPlaneDeployed, "True")
	h.rollOut("istiod-1-29-6")
	h.waitPhase("istio", v1beta1.PhaseReady)
}

// defaultTags checks that each cluster's default tag calls the istiod
// Service want names for it.
func defaultTags(rh *remoteHarness, want map[string]string) error {
	for cl, svc := range want {
		if got := defaultTagService(rh, cl); got != svc {
			return fmt.Errorf("default tag in %s calls %s, want %s", cl, got, svc)
		}
	}
	return nil
}
