//go:build integration

package meshca_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestIstiodSignsWithConstrainedIntermediate runs the real istiod with the
// primary's intermediate as its plug-in CA (name constraints, EKUs, path
// length 0, as meshca.CACerts issues it): istiod must start, serve its CA
// on a serving certificate it signed for itself (istiod.<ns>.svc), and sign
// a workload certificate that verifies against the root.
func TestIstiodSignsWithConstrainedIntermediate(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	c := env.Cluster("primary")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := localistiod.InstallCRDs(ctx, c.Config); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(c.Config)
	for _, n := range []string{"istio-system", "apps"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.CoreV1().ServiceAccounts("apps").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	root, err := ca.NewRoot(ca.RootOptions{TTL: 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cp := &render.ControlPlane{Namespace: "istio-system", ClusterName: "primary"}
	im, err := ca.IssueIntermediate(root, ca.IntermediateOptions{ClusterName: "primary", TTL: 12 * time.Hour, Now: now, Constraints: meshca.Constraints(cp)})
	if err != nil {
		t.Fatal(err)
	}
	if why := ca.ConstraintsReason(im.Cert, meshca.Constraints(cp)); why != "" {
		t.Fatalf("intermediate not constrained: %s", why)
	}
	d := framework.StartCAIstiod(t, c.Kubeconfig, filepath.Join(env.Dir, "istiod"), ca.NewPluginCerts(root, im).Data())

	// istiod's own serving certificate, signed with the plug-in CA, and a
	// workload certificate for apps/web, as istio-agent asks for it.
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	wc, err := framework.WorkloadCertificate(ctx, kube, d.SecureAddr, roots, "primary", "apps", "web")
	if err != nil {
		t.Fatalf("%v; istiod log:\n%s", err, localproc.TailFile(d.LogPath, 60))
	}
	if err := wc.VerifyServing(roots); err != nil {
		t.Errorf("istiod's serving certificate does not verify under the constrained intermediate: %v", err)
	}
	t.Logf("istiod serves with DNS names %v, issued by %q", wc.Served[0].DNSNames, wc.Served[0].Issuer.CommonName)
	leaf := wc.Chain[0]
	if err := wc.Verify(roots, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("workload certificate does not verify under the constrained intermediate: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wc.SPIFFE.String() || leaf.Issuer.String() != im.Cert.Subject.String() {
		t.Errorf("workload certificate URIs %v issuer %q, want %s from the intermediate", leaf.URIs, leaf.Issuer.CommonName, wc.SPIFFE)
	}
	t.Logf("istiod signed %v, issued by %q", leaf.URIs, leaf.Issuer.CommonName)
}
