//go:build integration

package operator_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/framework/fakerollout"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

const ns = "istio-system"

// harness is one real kube-apiserver with the operator running against it.
type harness struct {
	t   *testing.T
	env *testenv.Env
	// c reads through the operator's cache-backed client.
	c client.Client
	// direct reads straight from the API server.
	direct client.Client
	ctx    context.Context
}

func TestOperator(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	ctx := t.Context()
	h := &harness{t: t, env: env, ctx: ctx}

	// The CRDs and the samples go in with the real kubectl, exactly as a user would.
	applyCRDs(t, env, "primary")
	h.kubectl("create", "namespace", ns)
	h.kubectl("create", "namespace", "default-apps")
	h.kubectl("apply", "-f", repoPath("samples/istio.yaml"))
	h.kubectl("apply", "-f", repoPath("samples/remoteistio.yaml"))

	cfg := env.Cluster("primary").Config
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	if h.direct, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	// An upgraded mesh: an older meshfleet kept the root in the Istio namespace.
	legacyRoot := h.legacyRoot()
	mgr := framework.StartOperator(t, cfg, operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: time.Hour})
	h.c = mgr.GetClient()

	start := time.Now()
	h.waitCondition("istio", v1beta1.ConditionControlPlaneDeployed, metav1.ConditionTrue)
	deployed := time.Since(start)

	t.Run("sample installs the control plane", h.sampleInstalls)
	t.Run("cacerts chains to the root", h.cacertsChains)
	t.Run("the old root moved to meshfleet-system, identity kept", func(t *testing.T) { h.rootMoved(t, legacyRoot) })
	h.rollOut("istiod", render.GatewayNamespace+"/istio-ingressgateway")
	ist := h.waitPhase("istio", v1beta1.PhaseReady)
	ready := time.Since(start)
	if ist.Status.Version != "1.29.6" || ist.Status.ChartVersion != "1.29.6" {
		t.Errorf("status.version = %q, chartVersion = %q, want 1.29.6 and 1.29.6", ist.Status.Version, ist.Status.ChartVersion)
	}
	t.Logf("BENCH apply→ControlPlaneDeployed %v, apply→Ready %v (rollout simulated)", deployed.Round(time.Millisecond), ready.Round(time.Millisecond))

	t.Run("kubectl get shows phase and version", func(t *testing.T) {
		out := h.kubectl("get", "istios", "-n", ns)
		if !strings.Contains(out, "Ready") || !strings.Contains(out, "1.29.6") {
			t.Errorf("kubectl get istios:\n%s", out)
		}
	})
	t.Run("steady-state resync writes nothing", h.steadyState)
	t.Run("drift is repaired", h.driftRepaired)
	t.Run("version change rolls the control plane", h.versionRoll)
	t.Run("bad specs get conditions that name the field", h.badSpecs)
	t.Run("gateway-connected mode", h.gatewayConnected)
	t.Run("no gateway, istiod or workload may read the root", h.rootIsolated)
	t.Run("uninstall removes everything it installed", h.uninstall)
	t.Run("user-provided root CA", h.userRoot)
	t.Run("intermediate CA is reissued before it expires", h.rotation)
}

func (h *harness) sampleInstalls(t *testing.T) {
	dep := &appsv1.Deployment{}
	h.get(ns, "istiod", dep)
	img := dep.Spec.Template.Spec.Containers[0].Image
	if img != "registry.example.com/istio/pilot:1.29.6" {
		t.Errorf("istiod image = %q", img)
	}
	if dep.Labels[render.LabelOwnerName] != "istio" || len(dep.OwnerReferences) != 1 {
		t.Errorf("istiod not owned by the Istio resource: labels %v owners %v", dep.Labels, dep.OwnerReferences)
	}
	args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--log_output_level=default:info") {
		t.Errorf("istiod args lack the log level: %s", args)
	}
	cm := &corev1.ConfigMap{}
	h.get(ns, "istio", cm)
	for _, want := range []string{"mode: REGISTRY_ONLY", "rootNamespace: istio-system", "sampling: 1"} {
		if !strings.Contains(cm.Data["mesh"], want) {
			t.Errorf("mesh config lacks %q:\n%s", want, cm.Data["mesh"])
		}
	}
	h.get(render.GatewayNamespace, "istio-ingressgateway", &appsv1.Deployment{})
	h.get(render.GatewayNamespace, "istio-ingressgateway", &corev1.Service{})
	if err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istio-ingressgateway"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ingress gateway is in the control plane's namespace %s, beside cacerts: %v", ns, err)
	}
	pa := h.getU("security.istio.io/v1", "PeerAuthentication", ns, "default")
	if mode, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode"); mode != "PERMISSIVE" {
		t.Errorf("PeerAuthentication mode = %q, want PERMISSIVE (spec.mtls.enabled is false)", mode)
	}
	svc := &corev1.Service{}
	h.get(ns, "istiod", svc)
	if !hasPort(svc, 15010) {
		t.Errorf("istiod Service lacks 15010 though controlPlaneSecurityEnabled is false")
	}
	ri := &v1beta1.RemoteIstio{}
	h.get(ns, "localityaware-bj", ri)
	if ri.Spec.DockerImage.Region != "cn-beijing" || ri.Spec.Hub != "registry.example.com/istio-catalog" {
		t.Errorf("RemoteIstio sample did not round-trip: %+v", ri.Spec)
	}
}

func (h *harness) cacertsChains(t *testing.T) {
	cacerts := &corev1.Secret{}
	h.get(ns, meshca.CACertsSecretName, cacerts)
	rootSecret := &corev1.Secret{}
	h.get(meshca.Namespace, meshca.RootSecretName, rootSecret)
	if _, ok := cacerts.Data["root-key.pem"]; ok {
		t.Fatal("cacerts holds the root key")
	}
	root := parseCert(t, rootSecret.Data["root-cert.pem"])
	inter := parseCert(t, cacerts.Data[ca.CACertKey])
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := inter.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("intermediate does not chain to the root: %v", err)
	}
	if !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		t.Errorf("intermediate is not a path-length-0 CA")
	}
	want := ca.Constraints{DNSNames: []string{"istiod." + ns + ".svc", "istiod-remote." + ns + ".svc", "istio-pilot." + ns + ".svc"}}
	if why := ca.ConstraintsReason(inter, want); why != "" {
		t.Errorf("the primary's intermediate is not constrained to the trust domain and istiod's names: %s", why)
	}
	if string(cacerts.Data[ca.RootCertKey]) != string(rootSecret.Data["root-cert.pem"]) {
		t.Errorf("cacerts root-cert.pem differs from the root")
	}
	chain := string(cacerts.Data[ca.CertChainKey])
	if !strings.HasPrefix(chain, string(cacerts.Data[ca.CACertKey])) || !strings.HasSuffix(chain, string(rootSecret.Data["root-cert.pem"])) {
		t.Errorf("cert-chain.pem is not intermediate then root")
	}
	ist := &v1beta1.Istio{}
	h.get(ns, "istio", ist)
	if ist.Status.Certificates == nil || ist.Status.Certificates.RootFingerprint != ca.Fingerprint(root) {
		t.Errorf("status.certificates = %+v", ist.Status.Certificates)
	}
}

func (h *harness) steadyState(t *testing.T) {
	h.quiesce()
	total := sumWrites()
	for i := 0; i < 3; i++ {
		h.resync("istio")
	}
	if d := sumWrites() - total; d != 0 {
		t.Errorf("3 steady-state resyncs made %v API writes, want 0", d)
	}
	t.Logf("BENCH API writes per steady-state resync: %v", (sumWrites()-total)/3)
}

// quiesce waits until the operator has made no write for a second: the
// reconciles queued by the install's own events have drained.
func (h *harness) quiesce() {
	h.t.Helper()
	last, since := sumWrites(), time.Now()
	eventually(h.t, "the operator to settle", func() error {
		if n := sumWrites(); n != last {
			last, since = n, time.Now()
		}
		if time.Since(since) < time.Second {
			return fmt.Errorf("last write %v ago", time.Since(since))
		}
		return nil
	})
}

func (h *harness) driftRepaired(t *testing.T) {
	// Someone edits istiod's image.
	h.kubectl("-n", ns, "set", "image", "deployment/istiod", "discovery=evil.example.com/pilot:hacked")
	eventually(h.t, "istiod image restored", func() error {
		d := &appsv1.Deployment{}
		h.get(ns, "istiod", d)
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/istio/pilot:1.29.6" {
			return fmt.Errorf("image still %s", img)
		}
		return nil
	})
	// Someone deletes the mesh config and a cluster role.
	h.kubectl("-n", ns, "delete", "configmap", "istio")
	h.kubectl("delete", "clusterrole", "istiod-clusterrole-istio-system")
	eventually(h.t, "deleted objects recreated", func() error {
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istio"}, &corev1.ConfigMap{}); err != nil {
			return err
		}
		return h.direct.Get(h.ctx, client.ObjectKey{Name: "istiod-clusterrole-istio-system"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}})
	})
	// Someone edits one of Istio's CRDs, which the operator skips while
	// they stay as it last found them (decision 70).
	h.kubectl("patch", "crd", "virtualservices.networking.istio.io", "--type=json", "-p", `[{"op":"replace","path":"/spec/names/shortNames","value":["hacked"]}]`)
	eventually(h.t, "the CRD's short names restored", func() error {
		crd := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}}
		if err := h.direct.Get(h.ctx, client.ObjectKey{Name: "virtualservices.networking.istio.io"}, crd); err != nil {
			return err
		}
		if names, _, _ := unstructured.NestedStringSlice(crd.Object, "spec", "names", "shortNames"); len(names) != 1 || names[0] != "vs" {
			return fmt.Errorf("short names %v", names)
		}
		return nil
	})
}

func (h *harness) versionRoll(t *testing.T) {
	// A minor upgrade in place: 1.30's charts replace 1.29's.
	h.kubectl("-n", ns, "patch", "istio", "istio", "--type=merge", "-p", `{"spec":{"version":"1.30.3"}}`)
	eventually(h.t, "istiod on 1.30.3", func() error {
		d := &appsv1.Deployment{}
		h.get(ns, "istiod", d)
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/istio/pilot:1.30.3" {
			return fmt.Errorf("image %s", img)
		}
		return nil
	})
	ist := h.waitCondition("istio", v1beta1.ConditionReady, metav1.ConditionFalse)
	if c := meta.FindStatusCondition(ist.Status.Conditions, v1beta1.ConditionReady); c.Reason != v1beta1.ReasonRollingOut {
		t.Errorf("Ready reason during roll = %s (%s)", c.Reason, c.Message)
	}
	if ist.Status.Version != "1.29.6" || ist.Status.ChartVersion != "1.29.6" {
		t.Errorf("status during roll: version %q, chartVersion %q, want still 1.29.6", ist.Status.Version, ist.Status.ChartVersion)
	}
	h.rollOut("istiod", render.GatewayNamespace+"/istio-ingressgateway")
	ist = h.waitPhase("istio", v1beta1.PhaseReady)
	if ist.Status.Version != "1.30.3" || ist.Status.ChartVersion != "1.30.3" {
		t.Errorf("status after roll: version %q, chartVersion %q, want 1.30.3", ist.Status.Version, ist.Status.ChartVersion)
	}
}

func (h *harness) badSpecs(t *testing.T) {
	cases := []struct {
		name, spec, field string
	}{
		{"bad-cidr", `{"version":"1.30.3","includeIPRanges":"10.0.0.0/33"}`, "spec.includeIPRanges"},
		{"no-root", `{"version":"1.30.3","security":{"selfSigned":false}}`, "spec.security.caSecretRef"},
		{"tagged-hub", `{"version":"1.30.3","hub":"docker.io/istio:1.2"}`, "spec.hub"},
		{"self-failover", `{"version":"1.30.3","localityLB":{"enabled":true,"failover":[{"from":"eu","to":"eu"}]}}`, "spec.localityLB.failover[0].to"},
		{"renew-too-early", `{"version":"1.30.3","security":{"intermediateCertTTL":"24h","renewBefore":"48h"}}`, "spec.security.renewBefore"},
		{"region-without-domain", `{"version":"1.30.3","hub":"istio","dockerImage":{"region":"eu-west"}}`, "spec.hub"},
		{"second-install", `{"version":"1.30.3"}`, "Istio istio-system/istio already manages"},
		{"self-injection", `{"version":"1.30.3","autoInjectionNamespaces":["self-injection"]}`, "spec.autoInjectionNamespaces[0]"},
		{"unsupported-version", `{"version":"1.1.8"}`, "1.29.x (charts 1.29.6), 1.30.x (charts 1.30.3)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.kubectl("create", "namespace", c.name)
			h.applyIstio(c.name, "istio", c.spec)
			ist := h.waitCondition(c.name+"/istio", v1beta1.ConditionPreCheckPassed, metav1.ConditionFalse)
			cond := meta.FindStatusCondition(ist.Status.Conditions, v1beta1.ConditionPreCheckPassed)
			if !strings.Contains(cond.Message, c.field) {
				t.Errorf("condition message %q does not name %q", cond.Message, c.field)
			}
			if ist.Status.Phase != v1beta1.PhaseFailed {
				t.Errorf("phase = %s, want Failed", ist.Status.Phase)
			}
			t.Logf("%s: %s: %s", c.name, cond.Reason, cond.Message)
			// Nothing of it is installed.
			if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: c.name, Name: "istiod"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
				t.Errorf("istiod installed for an invalid spec: %v", err)
			}
			h.kubectl("-n", c.name, "delete", "istio", "istio", "--wait=true")
		})
	}
	// The cluster name defaults to the resource's name, which may hold dots
	// and 253 characters; a cluster ID may not (the schema's rule; FromIstio
	// checks the same, TestClusterNameFromObjectName).
	for _, name := range []string{"eu.west", strings.Repeat("c", 64)} {
		out, err := h.kubectlStdin(istioYAML("default", name, `{"version":"1.30.3"}`), "apply", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(out, "set spec.clusterName") {
			t.Errorf("Istio named %s: kubectl apply err=%v, output %q does not say set spec.clusterName", name, err, out)
		}
		out, err = h.kubectlStdin(istioYAML("default", name, `{"version":"1.30.3","clusterName":"eu-west"}`), "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Errorf("Istio named %s with spec.clusterName refused: %v %s", name, err, out)
		}
	}
	// The API server itself rejects what the schema forbids, before the operator sees it.
	for _, c := range []struct{ spec, want string }{
		{`{"version":"latest"}`, "spec.version"},
		{`{"version":"1.30.3","outboundTrafficPolicy":{"mode":"BLOCK"}}`, "spec.outboundTrafficPolicy.mode"},
		{`{"version":"1.30.3","multiCluster":{"mode":"mesh"}}`, "spec.multiCluster.mode"},
		{`{"version":"1.30.3","tracing":{"samplingPercent":150}}`, "spec.tracing.samplingPercent"},
		{`{"version":"1.30.3","logging":{"level":"verbose"}}`, "spec.logging.level"},
		{`{"version":"1.30.3","hub":"docker.io/istio\"\n  evil: x"}`, "spec.hub"},
		{`{"version":"1.30.3","hub":"docker.io/istio\""}`, "spec.hub"},
		{`{"version":"1.30.3","sidecarInjector":{"replicaCount":1000000}}`, "spec.sidecarInjector.replicaCount"},
		{`{"version":"1.30.3","gateways":{"enabled":true,"ingress":[{"enabled":true,"replicaCount":1000000}]}}`, "spec.gateways.ingress[0].replicaCount"},
		{`{"version":"1.30.3","clusterName":"eu.west"}`, "spec.clusterName"},
		{`{"version":"1.30.3","autoInjectionNamespaces":["default","kube-system"]}`, "spec.autoInjectionNamespaces"},
	} {
		out, err := h.kubectlStdin(istioYAML("default", "schema", c.spec), "apply", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("spec %s: kubectl apply err=%v, output %q does not name %s", c.spec, err, out, c.want)
		}
	}
}

func (h *harness) gatewayConnected(t *testing.T) {
	h.kubectl("-n", ns, "patch", "istio", "istio", "--type=merge", "-p",
		`{"spec":{"network":"net1","multiCluster":{"mode":"gatewayConnected"},"mtls":{"enabled":true},"controlPlaneSecurityEnabled":true,"autoInjectionNamespaces":["default-apps"]}}`)
	eventually(h.t, "east-west gateway installed", func() error {
		svc := &corev1.Service{}
		if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: render.GatewayNamespace, Name: render.EastWestGatewayName}, svc); err != nil {
			return err
		}
		if svc.Labels[render.LabelNetwork] != "net1" || !hasPort(svc, 15443) {
			return fmt.Errorf("east-west Service labels %v ports %v", svc.Labels, svc.Spec.Ports)
		}
		return nil
	})
	eventually(h.t, "cross-network Gateway", func() error {
		return h.direct.Get(h.ctx, client.ObjectKey{Namespace: render.GatewayNamespace, Name: "cross-network-gateway"},
			&unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "Gateway"}})
	})
	gw := h.getU("networking.istio.io/v1", "Gateway", render.GatewayNamespace, "cross-network-gateway")
	servers, _, _ := unstructured.NestedSlice(gw.Object, "spec", "servers")
	if len(servers) != 1 || fmt.Sprint(servers[0].(map[string]any)["tls"]) != "map[mode:AUTO_PASSTHROUGH]" {
		t.Errorf("cross-network Gateway servers = %v", servers)
	}
	eventually(h.t, "istiod Service closed its plain-text port, mTLS strict", func() error {
		svc := &corev1.Service{}
		h.get(ns, "istiod", svc)
		if hasPort(svc, 15010) {
			return fmt.Errorf("istiod Service still has 15010")
		}
		pa := h.getU("security.istio.io/v1", "PeerAuthentication", ns, "default")
		if mode, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode"); mode != "STRICT" {
			return fmt.Errorf("PeerAuthentication mode %s", mode)
		}
		return nil
	})
	cm := &corev1.ConfigMap{}
	h.get(ns, "istio", cm)
	if !strings.Contains(cm.Data["meshNetworks"], "net1") || !strings.Contains(cm.Data["meshNetworks"], "15443") ||
		!strings.Contains(cm.Data["meshNetworks"], render.EastWestGatewayName+"."+render.GatewayNamespace+".svc") {
		t.Errorf("meshNetworks = %s", cm.Data["meshNetworks"])
	}
	for name, label := range map[string]string{ns: render.LabelNetwork, render.GatewayNamespace: render.LabelNetwork, "default-apps": render.LabelInjection} {
		eventually(h.t, "namespace "+name+" labelled "+label, func() error {
			n := &corev1.Namespace{}
			h.apiGet(client.ObjectKey{Name: name}, n)
			if n.Labels[label] == "" {
				return fmt.Errorf("labels %v", n.Labels)
			}
			return nil
		})
	}
	// Turning the mode off again removes the gateway (prune).
	h.kubectl("-n", ns, "patch", "istio", "istio", "--type=json", "-p",
		`[{"op":"replace","path":"/spec/multiCluster/mode","value":"none"},{"op":"remove","path":"/spec/network"},{"op":"remove","path":"/spec/autoInjectionNamespaces"}]`)
	eventually(h.t, "east-west gateway pruned", func() error {
		err := h.c.Get(h.ctx, client.ObjectKey{Namespace: render.GatewayNamespace, Name: render.EastWestGatewayName}, &appsv1.Deployment{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		n := &corev1.Namespace{}
		h.apiGet(client.ObjectKey{Name: "default-apps"}, n)
		if _, ok := n.Labels[render.LabelInjection]; ok {
			return fmt.Errorf("default-apps still labelled %v", n.Labels)
		}
		return nil
	})
}

func (h *harness) uninstall(t *testing.T) {
	// The locality server wrote rules, and a pod of it still runs.
	rules := h.writeLocalityRules(t)
	pod := h.localityServerPod(t)
	// The sample RemoteIstio is joined: the uninstall waits for it.
	h.kubectl("-n", ns, "delete", "istio", "istio", "--wait=false")
	eventually(h.t, "uninstall held by the joined RemoteIstio", func() error {
		c := meta.FindStatusCondition(h.istio("istio").Status.Conditions, v1beta1.ConditionReady)
		if c == nil || c.Reason != v1beta1.ReasonRemotesJoined || !strings.Contains(c.Message, "istio-system/localityaware-bj") {
			return fmt.Errorf("Ready condition %+v", c)
		}
		return nil
	})
	// It never reached its cluster (no kubeconfig, no tunnel): abandon it.
	h.kubectl("-n", ns, "annotate", "remoteistio", "localityaware-bj", "meshfleet.io/abandon-remote=true")
	h.kubectl("-n", ns, "delete", "remoteistio", "localityaware-bj", "--wait=true", "--timeout=60s")
	h.expectHeldForLocalityServer(t)
	h.expectLocalityRules(t, rules, true)
	if err := h.direct.Delete(h.ctx, pod); err != nil {
		t.Fatal(err)
	}
	h.kubectl("-n", ns, "wait", "--for=delete", "istio/istio", "--timeout=60s")
	sel := client.MatchingLabels{render.LabelOwnerName: "istio", render.LabelOwnerNamespace: ns}
	for _, gvk := range []string{"v1/ConfigMap", "v1/Secret", "v1/Service", "v1/ServiceAccount", "apps/v1/Deployment",
		"rbac.authorization.k8s.io/v1/ClusterRole", "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
		"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration",
		"security.istio.io/v1/PeerAuthentication", "v1/Namespace"} {
		i := strings.LastIndex(gvk, "/")
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion(gvk[:i])
		list.SetKind(gvk[i+1:] + "List")
		if err := h.direct.List(h.ctx, list, sel); err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			if o.GetDeletionTimestamp() == nil {
				t.Errorf("%s %s/%s left after uninstall", gvk, o.GetNamespace(), o.GetName())
			}
		}
	}
	h.expectLocalityRules(t, rules, false)
	h.finalizeNamespace(t, render.GatewayNamespace)
	// Kept on purpose: Istio's CRDs (users' config) and the root CA.
	h.apiGet(client.ObjectKey{Name: "virtualservices.networking.istio.io"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}})
	h.apiGet(client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.RootSecretName}, &corev1.Secret{})
	n := &corev1.Namespace{}
	h.apiGet(client.ObjectKey{Name: ns}, n)
	if _, ok := n.Labels[render.LabelNetwork]; ok {
		t.Errorf("namespace keeps the network label after uninstall")
	}
}

func (h *harness) userRoot(t *testing.T) {
	h.kubectl("create", "namespace", "byo")
	h.applyIstio("byo", "mesh", `{"version":"1.30.3","security":{"selfSigned":false,"caSecretRef":{"name":"my-root"}}}`)
	ist := h.waitCondition("byo/mesh", v1beta1.ConditionResourceDefinitionsCreated, metav1.ConditionFalse)
	cond := meta.FindStatusCondition(ist.Status.Conditions, v1beta1.ConditionResourceDefinitionsCreated)
	if cond.Reason != v1beta1.ReasonCAError || !strings.Contains(cond.Message, "byo/my-root") || !strings.Contains(cond.Message, "create secret tls") {
		t.Errorf("missing root Secret: condition %s %q", cond.Reason, cond.Message)
	}
	root, err := ca.NewRoot(ca.RootOptions{TTL: 24 * time.Hour * 365, Now: time.Now(), CommonName: "Example Corp root"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.pem"), root.CertPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "root-key.pem"), root.KeyPEM, 0o600)
	h.kubectl("-n", "byo", "create", "secret", "tls", "my-root", "--cert="+filepath.Join(dir, "root.pem"), "--key="+filepath.Join(dir, "root-key.pem"))
	h.waitCondition("byo/mesh", v1beta1.ConditionControlPlaneDeployed, metav1.ConditionTrue)
	cacerts := &corev1.Secret{}
	h.get("byo", meshca.CACertsSecretName, cacerts)
	if err := ca.VerifyChain(parseCert(t, cacerts.Data[ca.CACertKey]), root.Cert, time.Now()); err != nil {
		t.Errorf("cacerts does not chain to the user's root: %v", err)
	}
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: "byo", Name: meshca.RootSecretName}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("a self-signed root was created although the user brought one: %v", err)
	}
}

func (h *harness) rotation(t *testing.T) {
	// A 40s intermediate renewed 30s before expiry is reissued every ~10s.
	h.kubectl("-n", "byo", "patch", "istio", "mesh", "--type=merge", "-p",
		`{"spec":{"security":{"intermediateCertTTL":"40s","renewBefore":"30s"}}}`)
	serial := func() string {
		s := &corev1.Secret{}
		h.apiGet(client.ObjectKey{Namespace: "byo", Name: meshca.CACertsSecretName}, s)
		return parseCert(t, s.Data[ca.CACertKey]).SerialNumber.String()
	}
	first := serial()
	seen := map[string]bool{first: true}
	eventually(h.t, "two reissues", func() error {
		seen[serial()] = true
		if len(seen) < 3 {
			return fmt.Errorf("%d distinct intermediates so far", len(seen))
		}
		return nil
	})
	cacerts := &corev1.Secret{}
	h.apiGet(client.ObjectKey{Namespace: "byo", Name: meshca.CACertsSecretName}, cacerts)
	root := &corev1.Secret{}
	h.apiGet(client.ObjectKey{Namespace: "byo", Name: "my-root"}, root)
	inter := parseCert(t, cacerts.Data[ca.CACertKey])
	if err := ca.VerifyChain(inter, parseCert(t, root.Data["tls.crt"]), time.Now()); err != nil {
		t.Errorf("reissued intermediate does not chain to the root: %v", err)
	}
	if life := inter.NotAfter.Sub(inter.NotBefore); life > 2*time.Minute {
		t.Errorf("intermediate lifetime %v, want about 40s (+1m clock-skew allowance)", life)
	}
}

// --- helpers ---

func (h *harness) kubectl(args ...string) string {
	h.t.Helper()
	out, err := h.env.Kubectl(h.ctx, "primary", args...)
	if err != nil {
		h.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h *harness) kubectlStdin(stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(h.ctx, h.env.Bins.Kubectl, append([]string{"--kubeconfig", h.env.Cluster("primary").Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func istioYAML(namespace, name, spec string) string {
	return fmt.Sprintf(`{"apiVersion":"meshfleet.io/v1beta1","kind":"Istio","metadata":{"name":%q,"namespace":%q},"spec":%s}`, name, namespace, spec)
}

func (h *harness) applyIstio(namespace, name, spec string) {
	h.t.Helper()
	if out, err := h.kubectlStdin(istioYAML(namespace, name, spec), "apply", "-f", "-"); err != nil {
		h.t.Fatalf("apply Istio %s/%s: %v\n%s", namespace, name, err, out)
	}
}

func (h *harness) get(namespace, name string, obj client.Object) {
	h.t.Helper()
	if err := h.c.Get(h.ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		h.t.Fatalf("get %T %s/%s: %v", obj, namespace, name, err)
	}
}

func (h *harness) apiGet(key client.ObjectKey, obj client.Object) {
	h.t.Helper()
	if err := h.direct.Get(h.ctx, key, obj); err != nil {
		h.t.Fatalf("get %T %s: %v", obj, key, err)
	}
}

func (h *harness) getU(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	h.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	h.apiGet(client.ObjectKey{Namespace: namespace, Name: name}, u)
	return u
}

func (h *harness) istio(ref string) *v1beta1.Istio {
	h.t.Helper()
	key := types.NamespacedName{Namespace: ns, Name: ref}
	if i := strings.IndexByte(ref, '/'); i > 0 {
		key = types.NamespacedName{Namespace: ref[:i], Name: ref[i+1:]}
	}
	ist := &v1beta1.Istio{}
	if err := h.direct.Get(h.ctx, key, ist); err != nil {
		h.t.Fatalf("get Istio %s: %v", key, err)
	}
	return ist
}

func (h *harness) waitCondition(ref, condType string, status metav1.ConditionStatus) *v1beta1.Istio {
	h.t.Helper()
	var ist *v1beta1.Istio
	eventually(h.t, fmt.Sprintf("Istio %s %s=%s", ref, condType, status), func() error {
		ist = h.istio(ref)
		c := meta.FindStatusCondition(ist.Status.Conditions, condType)
		if c == nil || c.Status != status || ist.Status.ObservedGeneration != ist.Generation {
			return fmt.Errorf("conditions: %s", formatConditions(ist.Status.Conditions))
		}
		return nil
	})
	return ist
}

func (h *harness) waitPhase(ref string, phase v1beta1.Phase) *v1beta1.Istio {
	h.t.Helper()
	var ist *v1beta1.Istio
	eventually(h.t, fmt.Sprintf("Istio %s phase %s", ref, phase), func() error {
		ist = h.istio(ref)
		if ist.Status.Phase != phase || ist.Status.ObservedGeneration != ist.Generation {
			return fmt.Errorf("phase %s, conditions: %s", ist.Status.Phase, formatConditions(ist.Status.Conditions))
		}
		return nil
	})
	return ist
}

// rollOut plays the deployment controller and kubelet, which this
// environment does not run, for Deployments named name (in the control
// plane's namespace) or namespace/name: it reports their current
// generation fully rolled out and available (framework/fakerollout).
func (h *harness) rollOut(names ...string) {
	h.t.Helper()
	for _, name := range names {
		namespace := ns
		if n, rest, ok := strings.Cut(name, "/"); ok {
			namespace, name = n, rest
		}
		d, err := fakerollout.RollOut(h.ctx, h.direct, namespace, name)
		if err != nil {
			h.t.Fatalf("roll out %s: %v", name, err)
		}
		h.t.Logf("rolled out %s: generation %d status %+v", name, d.Generation, d.Status)
	}
}

// resync makes the operator reconcile the Istio resource once more (an
// annotation change is a trigger) and waits until it has.
func (h *harness) resync(name string) {
	h.t.Helper()
	before := reconciles()
	h.kubectl("-n", ns, "annotate", "--overwrite", "istio", name, fmt.Sprintf("test/resync=%d", time.Now().UnixNano()))
	eventually(h.t, "a reconcile", func() error {
		if reconciles() <= before {
			return fmt.Errorf("no reconcile yet")
		}
		return nil
	})
}

func reconciles() float64 {
	return gatherSum("controller_runtime_reconcile_total", map[string]string{"controller": "istio"})
}

func sumWrites() float64 { return gatherSum("meshfleet_operator_api_writes_total", nil) }

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func hasPort(svc *corev1.Service, port int32) bool {
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

func repoPath(p string) string { return filepath.Join("..", "..", p) }

// applyCRDs installs meshfleet's CRDs in cluster as `meshctl install`
// does, waiting until they serve: under load a request right after
// kubectl's apply could find no such kind.
func applyCRDs(t testing.TB, env *testenv.Env, cluster string) {
	t.Helper()
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Cluster(cluster).Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(t.Context(), c, crds); err != nil {
		t.Fatalf("installing meshfleet's CRDs in cluster %s: %v", cluster, err)
	}
}

// finalizeNamespace plays kube-controller-manager's namespace controller
// (not run here) for a namespace the operator deleted and emptied: it
// removes the namespace's finalizer, so that the name can be used again.
func (h *harness) finalizeNamespace(t *testing.T, name string) {
	t.Helper()
	kube, err := kubernetes.NewForConfig(h.env.Cluster("primary").Config)
	if err != nil {
		t.Fatal(err)
	}
	n, err := kube.CoreV1().Namespaces().Get(h.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if n.DeletionTimestamp == nil {
		t.Fatalf("namespace %s was not deleted by the uninstall", name)
	}
	n.Spec.Finalizers = nil
	if _, err := kube.CoreV1().Namespaces().Finalize(h.ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("finalizing namespace %s: %v", name, err)
	}
	eventually(h.t, "namespace "+name+" gone", func() error {
		if _, err := kube.CoreV1().Namespaces().Get(h.ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}
