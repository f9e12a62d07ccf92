//go:build integration

package operator_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// legacyRoot puts a root where meshfleet kept it before the root was
// isolated (the Istio namespace), as an upgraded mesh has it.
func (h *harness) legacyRoot() *ca.KeyPair {
	root, err := ca.NewRoot(ca.RootOptions{TTL: 24 * time.Hour * 365, Now: time.Now(), CommonName: "root of an upgraded mesh"})
	if err != nil {
		h.t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: meshca.RootSecretName, Namespace: ns,
		Labels: map[string]string{render.LabelManagedBy: render.ManagedByValue, meshca.LabelRole: "root-ca"}},
		Data: map[string][]byte{meshca.RootCertKey: root.CertPEM, meshca.RootKeyKey: root.KeyPEM}}
	if err := h.direct.Create(h.ctx, s); err != nil {
		h.t.Fatal(err)
	}
	return root
}

// rootMoved: the root of an upgraded mesh is in meshfleet-system now, the
// same certificate and key (the mesh keeps its identity), and gone from
// the Istio namespace.
func (h *harness) rootMoved(t *testing.T, legacy *ca.KeyPair) {
	moved := &corev1.Secret{}
	h.apiGet(client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.RootSecretName}, moved)
	if !bytes.Equal(moved.Data[meshca.RootCertKey], legacy.CertPEM) || !bytes.Equal(moved.Data[meshca.RootKeyKey], legacy.KeyPEM) {
		t.Errorf("the root in %s is not the upgraded mesh's root", meshca.Namespace)
	}
	err := h.direct.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: meshca.RootSecretName}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the old root is still in %s (readable by its gateways): %v", ns, err)
	}
	cacerts := &corev1.Secret{}
	h.apiGet(client.ObjectKey{Namespace: ns, Name: meshca.CACertsSecretName}, cacerts)
	if err := ca.VerifyChain(parseCert(t, cacerts.Data[ca.CACertKey]), legacy.Cert, time.Now()); err != nil {
		t.Errorf("cacerts does not chain to the upgraded mesh's root: %v", err)
	}
}

// rootIsolated asks the API server (SubjectAccessReview, what `kubectl auth
// can-i --as` asks) whether any service account of the Istio namespace (the
// ingress and east-west gateways', istiod's…) or of a workload namespace
// may read the root CA or the tunnel CA Secret.
func (h *harness) rootIsolated(t *testing.T) {
	istiodSA := "system:serviceaccount:" + ns + ":istiod"
	if _, _, err := meshca.TunnelCA(h.ctx, h.direct, time.Now()); err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(h.env.Cluster("primary").Config)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, n := range []string{ns, render.GatewayNamespace, "default-apps"} {
		sas, err := kube.CoreV1().ServiceAccounts(n).List(h.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, sa := range sas.Items {
			subjects = append(subjects, "system:serviceaccount:"+n+":"+sa.Name)
		}
	}
	// Asked for even when gone (gateway-connected mode may have been turned
	// off again): their Roles and RoleBindings are what the charts render.
	for _, u := range []string{"istiod", "istio-ingressgateway", "istio-eastwestgateway", "istio-reader-service-account"} {
		if u := "system:serviceaccount:" + ns + ":" + u; !slices.Contains(subjects, u) {
			subjects = append(subjects, u)
		}
	}
	gateways := h.gatewaySubjects(t, kube)
	for _, u := range gateways {
		if !slices.Contains(subjects, u) {
			subjects = append(subjects, u)
		}
	}
	// A workload: the default service account of an injected namespace.
	if u := "system:serviceaccount:default-apps:default"; !slices.Contains(subjects, u) {
		subjects = append(subjects, u)
	}
	t.Logf("asking for %d service accounts: %v", len(subjects), subjects)
	for _, user := range subjects {
		for _, secret := range []string{meshca.RootSecretName, meshca.TunnelCASecretName} {
			for _, verb := range []string{"get", "list", "watch"} {
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User:               user,
					Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + strings.Split(user, ":")[2], "system:authenticated"},
					ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: meshca.Namespace, Verb: verb, Resource: "secrets", Name: secret},
				}}
				if verb != "get" {
					sar.Spec.ResourceAttributes.Name = ""
				}
				res, err := kube.AuthorizationV1().SubjectAccessReviews().Create(h.ctx, sar, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				answer := "no"
				switch {
				case res.Status.Allowed && user == istiodSA && strings.Contains(res.Status.Reason, `ClusterRole "istiod-clusterrole-`+ns+`"`):
					// Upstream istiod lists Secrets cluster-wide and cannot
					// start without it (ARCHITECTURE.md, decision 10).
					answer = "yes, through upstream istiod's own ClusterRole only"
				case res.Status.Allowed:
					answer = "yes"
					t.Errorf("%s can-i %s secret %s/%s: yes (%s)", user, verb, meshca.Namespace, secret, res.Status.Reason)
				}
				t.Logf("can-i %s secrets/%s -n %s --as %s: %s", verb, secret, meshca.Namespace, user, answer)
			}
		}
	}
	// The intermediate CA (cacerts) signs any workload identity of the trust
	// domain: no gateway may read it either.
	for _, user := range gateways {
		for _, verb := range []string{"get", "list", "watch"} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               user,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + strings.Split(user, ":")[2], "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "secrets"},
			}}
			if verb == "get" {
				sar.Spec.ResourceAttributes.Name = meshca.CACertsSecretName
			}
			res, err := kube.AuthorizationV1().SubjectAccessReviews().Create(h.ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status.Allowed {
				t.Errorf("%s can-i %s secret %s/%s: yes (%s)", user, verb, ns, meshca.CACertsSecretName, res.Status.Reason)
				continue
			}
			t.Logf("can-i %s secrets/%s -n %s --as %s: no", verb, meshca.CACertsSecretName, ns, user)
		}
	}
	// The same through kubectl's own impersonation, as an admin would check.
	out, _ := h.env.Kubectl(h.ctx, "primary", "auth", "can-i", "get", "secret/"+meshca.RootSecretName, "-n", meshca.Namespace,
		"--as", "system:serviceaccount:"+ns+":istio-ingressgateway", "--as-group", "system:serviceaccounts")
	if strings.TrimSpace(out) != "no" {
		t.Errorf("kubectl auth can-i get the root as the ingress gateway: %q, want no", out)
	}
	for _, user := range gateways {
		out, _ := h.env.Kubectl(h.ctx, "primary", "auth", "can-i", "get", "secret/"+meshca.CACertsSecretName, "-n", ns,
			"--as", user, "--as-group", "system:serviceaccounts")
		if strings.TrimSpace(out) != "no" {
			t.Errorf("kubectl auth can-i get secret/%s -n %s --as %s: %q, want no", meshca.CACertsSecretName, ns, user, out)
		}
	}
}

// gatewaySubjects are the service accounts the gateways run as, wherever
// the operator put them: those of its gateway Deployments, and the chart's
// names in the gateway namespace (asked for even when gone).
func (h *harness) gatewaySubjects(t *testing.T, kube kubernetes.Interface) []string {
	deps, err := kube.AppsV1().Deployments("").List(h.ctx, metav1.ListOptions{LabelSelector: render.LabelManagedBy + "=" + render.ManagedByValue})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range deps.Items {
		if !strings.Contains(d.Name, "gateway") {
			continue
		}
		sa := d.Spec.Template.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		out = append(out, "system:serviceaccount:"+d.Namespace+":"+sa)
	}
	if len(out) == 0 {
		t.Fatal("no gateway Deployment installed: nothing to ask about")
	}
	for _, u := range []string{"istio-ingressgateway", "istio-eastwestgateway"} {
		if u := "system:serviceaccount:" + render.GatewayNamespace + ":" + u; !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	t.Logf("gateway service accounts: %v", out)
	return out
}
