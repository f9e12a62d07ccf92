//go:build integration

package operator_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// remoteHarness is a primary and two remote clusters with the operator
// running against the primary.
type remoteHarness struct {
	t      *testing.T
	tunnel *tunnel.Local
	// tunnelCA issues the tunnel's certificates.
	tunnelCA *ca.KeyPair
	env      *testenv.Env
	ctx      context.Context
	clients  map[string]client.Client
}

func TestRemoteIstio(t *testing.T) {
	env := testenv.Start(t,
		localcluster.ClusterOptions{Name: "primary"},
		// remote1 runs the controller that fills the aggregated roles
		// (view), as every real cluster does, for Kiali's RBAC.
		localcluster.ClusterOptions{Name: "remote1", ControllerManager: true, Controllers: localcluster.AggregationControllers},
		localcluster.ClusterOptions{Name: "remote2"},
		localcluster.ClusterOptions{Name: "remote3"},
	)
	ctx := t.Context()
	h := &remoteHarness{t: t, env: env, ctx: ctx, clients: map[string]client.Client{}}
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range env.Clusters {
		if h.clients[name], err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
	}
	applyCRDs(t, env, "primary")
	h.kubectl("primary", "create", "namespace", ns)
	for _, r := range []string{"remote1", "remote2"} {
		h.kubeconfigSecret(r+"-kubeconfig", env.Cluster(r).Kubeconfig)
	}
	h.apply(`{"apiVersion":"meshfleet.io/v1beta1","kind":"Istio","metadata":{"name":"istio","namespace":"istio-system"},
		"spec":{"version":"1.30.3","clusterName":"primary","multiCluster":{"mode":"flatNetwork"},"kiali":{"enabled":true}}}`)
	// remote3 sits behind the tunnel: its server's certificate is the
	// tunnel CA's, which the operator keeps (created here up front, as the
	// tunnel server's installer would have it).
	tunnelCA, _, err := meshca.TunnelCA(ctx, h.clients["primary"], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.tunnelCA = tunnelCA
	h.tunnel = startTunnel(t, tunnelCA, env.Cluster("primary"))
	// The operator presents its service account's token for the tunnel's
	// audience, as projected into its pod.
	opToken := filepath.Join(t.TempDir(), "operator-token")
	if err := tunnel.WriteServiceAccountToken(ctx, env.Cluster("primary").Config, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", opToken, time.Hour); err != nil {
		t.Fatal(err)
	}

	framework.StartOperator(t, env.Cluster("primary").Config, operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: time.Hour, RemoteResync: 2 * time.Second,
		Tunnel: &remoteistio.Tunnel{URL: h.tunnel.APIURL, CAData: tunnelCA.CertPEM, IstiodTokenFile: render.TunnelTokenPath, TokenFile: opToken}})

	start := time.Now()
	for _, r := range []string{"remote1", "remote2"} {
		h.apply(fmt.Sprintf(`{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":%q,"namespace":"istio-system"},
			"spec":{"kubeconfigSecretRef":{"name":"%s-kubeconfig"},"autoInjectionNamespaces":["default"],"pilotAddress":"203.0.113.10"}}`, r, r))
	}
	for _, r := range []string{"remote1", "remote2"} {
		if ri := h.waitRemote(r, v1beta1.ConditionReady, metav1.ConditionTrue); ri.Status.ChartVersion != "1.30.3" {
			t.Errorf("RemoteIstio %s status.chartVersion = %q, want 1.30.3 (the primary's version)", r, ri.Status.ChartVersion)
		}
	}
	t.Logf("BENCH RemoteIstio applied → Ready (two clusters, direct): %v", time.Since(start).Round(time.Millisecond))
	// The remotes may be Ready before the primary's own cacerts is written.
	eventually(t, "Istio istio ControlPlaneDeployed", func() error {
		ist := &v1beta1.Istio{}
		h.get("primary", ns, "istio", ist)
		if !meta.IsStatusConditionTrue(ist.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			return fmt.Errorf("conditions: %s", formatConditions(ist.Status.Conditions))
		}
		return nil
	})

	t.Run("every cluster's cacerts chains to one root", h.sharedRoot)
	t.Run("remote pieces are installed", h.remotePieces)
	t.Run("remote secret lets istiod read the remote, not write Secrets", h.remoteSecret)
	t.Run("a reader account created again gets a new token", h.readerRecreated)
	t.Run("Istio lists its members", h.members)
	t.Run("an unreachable remote keeps its last known conditions", h.remoteOutage)
	t.Run("a remote whose etcd is down is unreachable, not failed", h.remoteEtcdOutage)
	t.Run("istiod reads no token files while no member is tunnelled", h.tokenFileOption(false))
	t.Run("Kiali gets read access to the remotes", h.kiali)
	t.Run("drift in the remote is repaired", h.remoteDrift)
	t.Run("connection problems get a condition with the fix", h.connectionErrors)
	t.Run("kubeconfigs that run, read or skip verification are refused", h.untrustedKubeconfigs)
	t.Run("a kubeconfig pointing at another cluster is refused", h.wrongCluster)
	t.Run("deleting a RemoteIstio removes that cluster, nothing else", h.leave)
	t.Run("a cluster behind the tunnel joins without stored credentials", h.tunnelled)
	t.Run("istiod reads token files once a member is tunnelled", h.tokenFileOption(true))
	t.Run("deleting the Istio waits for its joined remotes", h.istioDeletionHeld)
}

// startTunnel runs a tunnel server that authenticates callers by client
// certificates of the primary's CA (istiod's) or tokens the primary issued
// for the tunnel (the operator's), and accepts the agents of the primary's
// RemoteIstios.
func startTunnel(t *testing.T, tunnelCA *ca.KeyPair, primary *localcluster.Cluster) *tunnel.Local {
	l, err := tunnel.StartLocal(tunnel.LocalOptions{Root: tunnelCA, ClientCAPEM: primary.CACertPEM, Primary: primary.Config})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	return l
}

func (h *remoteHarness) tunnelled(t *testing.T) {
	root := &corev1.Secret{}
	h.get("primary", meshca.Namespace, meshca.RootSecretName, root)
	rootKP, err := ca.ParseKeyPair(root.Data[meshca.RootCertKey], root.Data[meshca.RootKeyKey], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.apply(`{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":"remote3","namespace":"istio-system"},
		"spec":{"pilotAddress":"203.0.113.10"}}`)
	h.expectConnected("remote3", v1beta1.ReasonUnreachable, "no tunnel agent of cluster remote3")

	// The agent runs with the certificate the operator issued for remote3
	// (what `meshctl cluster join --tunnel` prints), applied in remote3.
	start := time.Now()
	stopAgent := h.startIssuedAgent(t)
	ri := h.waitRemote("remote3", v1beta1.ConditionReady, metav1.ConditionTrue)
	t.Logf("BENCH tunnel agent connected → RemoteIstio Ready: %v", time.Since(start).Round(time.Millisecond))
	if ri.Status.Connection != v1beta1.ConnectionTunnel {
		t.Errorf("connection = %q, want Tunnel", ri.Status.Connection)
	}
	// The remote secret points istiod at the tunnel with its own token: no
	// remote credential is stored in the primary.
	s := &corev1.Secret{}
	h.get("primary", ns, render.RemoteSecretName("remote3"), s)
	kc, err := clientcmd.Load(s.Data["remote3"])
	if err != nil {
		t.Fatal(err)
	}
	if c := kc.Clusters["remote3"]; c == nil || c.Server != h.tunnel.APIURL+"/clusters/remote3" {
		t.Errorf("remote secret server = %+v, want the tunnel URL", kc.Clusters["remote3"])
	}
	if a := kc.AuthInfos["remote3"]; a == nil || a.Token != "" || a.TokenFile == "" {
		t.Errorf("remote secret credentials = %+v, want only istiod's token file", kc.AuthInfos["remote3"])
	}
	ks := &corev1.Secret{}
	h.get("primary", ns, render.Kiali.SecretName("remote3"), ks)
	if kkc, err := clientcmd.Load(ks.Data["remote3"]); err != nil || kkc.Clusters["remote3"].Server != h.tunnel.APIURL+"/clusters/remote3" || kkc.AuthInfos["remote3"].Token != "" {
		t.Errorf("Kiali's secret for remote3 does not go through the tunnel with Kiali's own token: %v %+v", err, kkc)
	}
	// istiod, authenticated by the tunnel as itself, may read remote3.
	istiod, err := h.env.Cluster("primary").UserConfig("system:serviceaccount:istio-system:istiod", "system:serviceaccounts")
	if err != nil {
		t.Fatal(err)
	}
	istiod.Host = h.tunnel.APIURL + "/clusters/remote3"
	istiod.TLSClientConfig.CAData = kc.Clusters["remote3"].CertificateAuthorityData
	c, err := client.New(istiod, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.List(h.ctx, &corev1.ServiceList{}); err != nil {
		t.Errorf("istiod cannot list remote3's Services through the tunnel: %v", err)
	}
	if err := c.Create(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}); !apierrors.IsForbidden(err) {
		t.Errorf("istiod may create Secrets in remote3 through the tunnel: %v", err)
	}
	cacerts := &corev1.Secret{}
	h.get("remote3", ns, meshca.CACertsSecretName, cacerts)
	if err := ca.VerifyChain(parseCert(t, cacerts.Data[ca.CACertKey]), rootKP.Cert, time.Now()); err != nil {
		t.Errorf("remote3's cacerts does not chain to the mesh root: %v", err)
	}

	if !bytes.Equal(kc.Clusters["remote3"].CertificateAuthorityData, h.tunnelCA.CertPEM) {
		t.Errorf("istiod's remote secret trusts %q for the tunnel, want only the tunnel CA", kc.Clusters["remote3"].CertificateAuthorityData)
	}
	t.Run("the operator renews the agent's certificate through the tunnel", h.agentRenewal)
	t.Run("a remote's intermediate can pose neither as the tunnel server nor as an agent", h.tunnelAttacks)

	// The agent goes away: the condition says so, and names the fix; what
	// was installed through the tunnel stays known.
	ready := h.waitRemote("remote3", v1beta1.ConditionReady, metav1.ConditionTrue)
	stopAgent()
	h.expectConnected("remote3", v1beta1.ReasonUnreachable, "install the agent")
	h.expectUnreachable(t, "remote3", ready)
}

func (h *remoteHarness) sharedRoot(t *testing.T) {
	root := &corev1.Secret{}
	h.get("primary", meshca.Namespace, meshca.RootSecretName, root)
	rootCert := parseCert(t, root.Data[meshca.RootCertKey])
	seen := map[string]bool{}
	for _, c := range []string{"primary", "remote1", "remote2"} {
		s := &corev1.Secret{}
		h.get(c, ns, meshca.CACertsSecretName, s)
		inter := parseCert(t, s.Data[ca.CACertKey])
		if err := ca.VerifyChain(inter, rootCert, time.Now()); err != nil {
			t.Errorf("cacerts of %s does not chain to the primary's root: %v", c, err)
		}
		if got := ca.ClusterOf(inter); got != c {
			t.Errorf("cacerts of %s was issued for cluster %q", c, got)
		}
		want := ca.Constraints{}
		if c == "primary" {
			want.DNSNames = []string{"istiod." + ns + ".svc", "istiod-remote." + ns + ".svc", "istio-pilot." + ns + ".svc"}
		}
		if why := ca.ConstraintsReason(inter, want); why != "" {
			t.Errorf("cacerts of %s: %s", c, why)
		}
		if _, ok := s.Data[meshca.RootKeyKey]; ok {
			t.Errorf("cacerts of %s holds the root key", c)
		}
		seen[inter.SerialNumber.String()] = true
	}
	if len(seen) != 3 {
		t.Errorf("clusters share intermediates: %d distinct of 3", len(seen))
	}
	if err := h.clients["remote1"].Get(h.ctx, client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.RootSecretName}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("the root Secret exists in a remote cluster: %v", err)
	}
}

func (h *remoteHarness) remotePieces(t *testing.T) {
	for _, o := range []struct{ apiVersion, kind, namespace, name string }{
		{"v1", "ServiceAccount", ns, "istio-reader-service-account"},
		{"rbac.authorization.k8s.io/v1", "ClusterRole", "", "istio-reader-clusterrole-istio-system"},
		{"admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "istio-sidecar-injector"},
		{"v1", "Service", ns, "istiod"},
		{"apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "virtualservices.networking.istio.io"},
	} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(o.apiVersion)
		u.SetKind(o.kind)
		if err := h.clients["remote1"].Get(h.ctx, client.ObjectKey{Namespace: o.namespace, Name: o.name}, u); err != nil {
			t.Errorf("%s %s/%s missing in remote1: %v", o.kind, o.namespace, o.name, err)
		}
	}
	// istiod is not installed in a remote: the primary's serves it.
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment"}}
	if err := h.clients["remote1"].Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istiod"}, u); !apierrors.IsNotFound(err) {
		t.Errorf("remote1 runs an istiod Deployment: %v", err)
	}
	n := &corev1.Namespace{}
	h.get("remote1", "", "default", n)
	if n.Labels[render.LabelInjection] != "enabled" {
		t.Errorf("default namespace of remote1 not labelled for injection: %v", n.Labels)
	}
}

func (h *remoteHarness) remoteSecret(t *testing.T) {
	s := &corev1.Secret{}
	h.get("primary", ns, render.RemoteSecretName("remote1"), s)
	if s.Labels[render.LabelMultiCluster] != "true" {
		t.Errorf("remote secret labels %v lack %s=true", s.Labels, render.LabelMultiCluster)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data["remote1"])
	if err != nil {
		t.Fatalf("remote secret kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.List(h.ctx, &corev1.ServiceList{}); err != nil {
		t.Errorf("istiod's credentials cannot list remote1's Services: %v", err)
	}
	if err := c.List(h.ctx, &corev1.NodeList{}); err != nil {
		t.Errorf("istiod's credentials cannot list remote1's Nodes (localities): %v", err)
	}
	// Istio's reader role may write ConfigMaps (istiod publishes its root
	// certificate there) and patch webhooks, nothing more.
	err = c.Create(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}})
	if !apierrors.IsForbidden(err) {
		t.Errorf("istiod's credentials may create Secrets in remote1: %v", err)
	}
}

// readerRecreated deletes istiod's reader account in remote1, which revokes
// every token issued for it. The operator creates the account again at its
// next look at the remote and must then write a token of the new account:
// the old token has hours to live by its expiry, but none by its account.
func (h *remoteHarness) readerRecreated(t *testing.T) {
	h.kubectl("remote1", "-n", ns, "delete", "serviceaccount", "istio-reader-service-account")
	eventually(t, "remote1's remote secret reads Services again", func() error {
		s := &corev1.Secret{}
		h.get("primary", ns, render.RemoteSecretName("remote1"), s)
		cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data["remote1"])
		if err != nil {
			return err
		}
		c, err := client.New(cfg, client.Options{})
		if err != nil {
			return err
		}
		return c.List(h.ctx, &corev1.ServiceList{})
	})
}

func (h *remoteHarness) kiali(t *testing.T) {
	s := &corev1.Secret{}
	h.get("primary", ns, render.Kiali.SecretName("remote1"), s)
	if s.Labels["kiali.io/multiCluster"] != "true" || s.Annotations["kiali.io/cluster"] != "remote1" {
		t.Errorf("Kiali secret labels %v annotations %v", s.Labels, s.Annotations)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data["remote1"])
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.List(h.ctx, &corev1.NamespaceList{}); err != nil {
		t.Errorf("Kiali's credentials cannot list remote1's namespaces: %v", err)
	}
	vs := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "VirtualServiceList"}}
	if err := c.List(h.ctx, vs); err != nil {
		t.Errorf("Kiali's credentials cannot list remote1's VirtualServices: %v", err)
	}
	if err := c.Create(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}); !apierrors.IsForbidden(err) {
		t.Errorf("Kiali's credentials may create Secrets in remote1: %v", err)
	}
	// What Kiali lists to draw a cluster comes from the aggregated "view"
	// role, whose rules remote1's controller-manager fills as a real
	// cluster's does; reading Secrets (cacerts holds the remote's CA key)
	// is none of Kiali's business. Asked of remote1's own authorizer.
	if err := c.List(h.ctx, &appsv1.DeploymentList{}, client.InNamespace("default")); err != nil {
		t.Errorf("Kiali's credentials cannot list remote1's Deployments: %v", err)
	}
	kialiUser := serviceaccount.MakeUsername(ns, render.Kiali.ServiceAccount)
	for _, a := range []struct {
		attrs authorizationv1.ResourceAttributes
		want  bool
	}{
		{authorizationv1.ResourceAttributes{Namespace: "default", Verb: "list", Group: "apps", Resource: "deployments"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "default", Verb: "get", Resource: "pods", Subresource: "log"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "default", Verb: "list", Group: "networking.istio.io", Resource: "virtualservices"}, true},
		{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets", Name: "cacerts"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "default", Verb: "list", Resource: "secrets"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Group: "apps", Resource: "deployments"}, false},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: kialiUser, ResourceAttributes: &a.attrs}}
		if err := h.clients["remote1"].Create(h.ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != a.want {
			t.Errorf("%s may %s %s/%s %s in %q: allowed=%v, want %v (%s)", kialiUser, a.attrs.Verb, a.attrs.Group, a.attrs.Resource, a.attrs.Subresource, a.attrs.Namespace, sar.Status.Allowed, a.want, sar.Status.Reason)
		}
	}
}

func (h *remoteHarness) members(t *testing.T) {
	eventually(h.t, "Istio lists two Ready members", func() error {
		ist := &v1beta1.Istio{}
		h.get("primary", ns, "istio", ist)
		ready := 0
		for _, m := range ist.Status.Members {
			if m.Phase == v1beta1.PhaseReady && m.Connection == v1beta1.ConnectionDirect {
				ready++
			}
		}
		if ready != 2 {
			return fmt.Errorf("members %+v", ist.Status.Members)
		}
		return nil
	})
	out := h.kubectl("primary", "-n", ns, "get", "remoteistios")
	if !strings.Contains(out, "Direct") || !strings.Contains(out, "Ready") {
		t.Errorf("kubectl get remoteistios:\n%s", out)
	}
}

func (h *remoteHarness) remoteDrift(t *testing.T) {
	h.kubectl("remote1", "delete", "clusterrole", "istio-reader-clusterrole-istio-system")
	eventually(h.t, "reader ClusterRole restored in remote1", func() error {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}}
		return h.clients["remote1"].Get(h.ctx, client.ObjectKey{Name: "istio-reader-clusterrole-istio-system"}, u)
	})
}

func (h *remoteHarness) connectionErrors(t *testing.T) {
	h.apply(`{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":"broken","namespace":"istio-system"},
		"spec":{"kubeconfigSecretRef":{"name":"broken-kubeconfig"}}}`)
	h.expectConnected("broken", v1beta1.ReasonBadKubeconfig, "broken-kubeconfig not found")

	h.secret("broken-kubeconfig", map[string]string{"config": "x"})
	h.expectConnected("broken", v1beta1.ReasonBadKubeconfig, `has no key "kubeconfig" (it has config)`)

	h.secret("broken-kubeconfig", map[string]string{"kubeconfig": "this is not a kubeconfig"})
	h.expectConnected("broken", v1beta1.ReasonBadKubeconfig, "not usable")

	h.secret("broken-kubeconfig", map[string]string{"kubeconfig": kubeconfigFor("https://127.0.0.1:1", h.env.Cluster("remote1").CACertPEM, nil)})
	h.expectConnected("broken", v1beta1.ReasonUnreachable, "cannot reach the API server of cluster broken at https://127.0.0.1:1")

	nobody, err := h.env.Cluster("remote1").UserConfig("nobody")
	if err != nil {
		t.Fatal(err)
	}
	h.secret("broken-kubeconfig", map[string]string{"kubeconfig": kubeconfigFor(nobody.Host, nobody.CAData, nobody)})
	h.expectConnected("broken", v1beta1.ReasonUnauthorized, "bind the kubeconfig's user to cluster-admin")

	ri := &v1beta1.RemoteIstio{}
	h.get("primary", ns, "broken", ri)
	if ri.Status.Phase != v1beta1.PhaseFailed {
		t.Errorf("phase = %s, want Failed", ri.Status.Phase)
	}
	// The fix happens in the remote, where the operator watches nothing:
	// it looks again by itself, without a change to the RemoteIstio.
	h.kubectl("remote1", "create", "clusterrole", "nobody-reads-namespaces", "--verb=get", "--resource=namespaces")
	h.kubectl("remote1", "create", "clusterrolebinding", "nobody-reads-namespaces", "--clusterrole=nobody-reads-namespaces", "--user=nobody")
	eventually(h.t, "RemoteIstio broken Connected=True once the remote lets its user read", func() error {
		ri := &v1beta1.RemoteIstio{}
		h.get("primary", ns, "broken", ri)
		if c := meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("conditions: %s", formatConditions(ri.Status.Conditions))
		}
		return nil
	})
	h.kubectl("primary", "-n", ns, "delete", "remoteistio", "broken", "--wait=false")
	h.kubectl("primary", "-n", ns, "annotate", "remoteistio", "broken", "meshfleet.io/abandon-remote=true")
	eventually(h.t, "broken RemoteIstio gone", func() error {
		err := h.clients["primary"].Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "broken"}, &v1beta1.RemoteIstio{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}

func (h *remoteHarness) wrongCluster(t *testing.T) {
	b, err := os.ReadFile(h.env.Cluster("remote2").Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	h.secret("remote1-kubeconfig", map[string]string{"kubeconfig": string(b)})
	h.expectConnected("remote1", v1beta1.ReasonWrongCluster, "reaches a different cluster")
	h.kubeconfigSecret("remote1-kubeconfig", h.env.Cluster("remote1").Kubeconfig)
	h.waitRemote("remote1", v1beta1.ConditionReady, metav1.ConditionTrue)
}

func (h *remoteHarness) leave(t *testing.T) {
	h.kubectl("primary", "-n", ns, "delete", "remoteistio", "remote2", "--timeout=60s")
	if err := h.clients["primary"].Get(h.ctx, client.ObjectKey{Namespace: ns, Name: render.RemoteSecretName("remote2")}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("remote secret of remote2 still in the primary: %v", err)
	}
	sel := client.MatchingLabels{render.LabelOwnerKind: "RemoteIstio", render.LabelOwnerName: "remote2"}
	for _, kind := range []string{"ServiceList", "ServiceAccountList", "SecretList", "ConfigMapList"} {
		list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": kind}}
		if err := h.clients["remote2"].List(h.ctx, list, sel); err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			if o.GetDeletionTimestamp() == nil {
				t.Errorf("%s %s/%s left in remote2", strings.TrimSuffix(kind, "List"), o.GetNamespace(), o.GetName())
			}
		}
	}
	n := &corev1.Namespace{}
	h.get("remote2", "", "default", n)
	if _, ok := n.Labels[render.LabelInjection]; ok {
		t.Errorf("remote2's default namespace keeps the injection label")
	}
	// remote1 is untouched.
	h.get("primary", ns, render.RemoteSecretName("remote1"), &corev1.Secret{})
	h.waitRemote("remote1", v1beta1.ConditionReady, metav1.ConditionTrue)
	eventually(h.t, "Istio lists one member", func() error {
		ist := &v1beta1.Istio{}
		h.get("primary", ns, "istio", ist)
		if len(ist.Status.Members) != 1 || ist.Status.Members[0].Name != "remote1" {
			return fmt.Errorf("members %+v", ist.Status.Members)
		}
		return nil
	})
}

// --- helpers ---

func (h *remoteHarness) kubectl(cluster string, args ...string) string {
	h.t.Helper()
	out, err := h.env.Kubectl(h.ctx, cluster, args...)
	if err != nil {
		h.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h *remoteHarness) apply(obj string) {
	h.t.Helper()
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON([]byte(obj)); err != nil {
		h.t.Fatal(err)
	}
	if err := h.clients["primary"].Create(h.ctx, u); err != nil {
		h.t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func (h *remoteHarness) get(cluster, namespace, name string, obj client.Object) {
	h.t.Helper()
	if err := h.clients[cluster].Get(h.ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		h.t.Fatalf("get %T %s/%s in %s: %v", obj, namespace, name, cluster, err)
	}
}

func (h *remoteHarness) secret(name string, data map[string]string) {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	c := h.clients["primary"]
	_ = c.Delete(h.ctx, s)
	eventually(h.t, "secret "+name+" recreated", func() error { return c.Create(h.ctx, s.DeepCopy()) })
	// The operator does not watch user Secrets: nudge the RemoteIstios.
	var list v1beta1.RemoteIstioList
	if err := c.List(h.ctx, &list, client.InNamespace(ns)); err != nil {
		h.t.Fatal(err)
	}
	for i := range list.Items {
		ri := &list.Items[i]
		patch := client.MergeFrom(ri.DeepCopy())
		metav1.SetMetaDataAnnotation(&ri.ObjectMeta, "test/nudge", fmt.Sprint(time.Now().UnixNano()))
		_ = c.Patch(h.ctx, ri, patch)
	}
}

func (h *remoteHarness) kubeconfigSecret(name, path string) {
	h.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	h.secret(name, map[string]string{"kubeconfig": string(b)})
}

// kubeconfigFor writes a kubeconfig for server that authenticates with the
// client certificate of user, or with a made-up token when user is nil.
func kubeconfigFor(server string, caData []byte, user *rest.Config) string {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	auth := &clientcmdapi.AuthInfo{Token: "t"}
	if user != nil {
		auth = &clientcmdapi.AuthInfo{ClientCertificateData: user.CertData, ClientKeyData: user.KeyData}
	}
	kc.AuthInfos["u"] = auth
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	b, _ := clientcmd.Write(*kc)
	return string(b)
}

func (h *remoteHarness) waitRemote(name, condType string, status metav1.ConditionStatus) *v1beta1.RemoteIstio {
	h.t.Helper()
	var ri *v1beta1.RemoteIstio
	eventually(h.t, fmt.Sprintf("RemoteIstio %s %s=%s", name, condType, status), func() error {
		ri = &v1beta1.RemoteIstio{}
		h.get("primary", ns, name, ri)
		c := meta.FindStatusCondition(ri.Status.Conditions, condType)
		if c == nil || c.Status != status {
			return fmt.Errorf("conditions: %s", formatConditions(ri.Status.Conditions))
		}
		return nil
	})
	return ri
}

func (h *remoteHarness) expectConnected(name, reason, msg string) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("RemoteIstio %s Connected=False %s", name, reason), func() error {
		ri := &v1beta1.RemoteIstio{}
		h.get("primary", ns, name, ri)
		c := meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("conditions: %s", formatConditions(ri.Status.Conditions))
		}
		h.t.Logf("%s: %s: %s", name, c.Reason, c.Message)
		return nil
	})
}
