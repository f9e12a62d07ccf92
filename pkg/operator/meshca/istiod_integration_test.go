//go:build integration

package meshca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityapi "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/localcluster"
	"github.com/meshfleet/meshfleet/pkg/localistiod"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	caDir := filepath.Join(env.Dir, "cacerts")
	if err := os.MkdirAll(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range ca.NewPluginCerts(root, im).Data() {
		if err := os.WriteFile(filepath.Join(caDir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secureAddr := ln.Addr().String()
	ln.Close()
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: c.Kubeconfig, Dir: filepath.Join(env.Dir, "istiod"), ClusterID: "primary",
		Env:  []string{"ENABLE_CA_SERVER=true", "ROOT_CA_DIR=" + caDir, "PILOT_CERT_PROVIDER=istiod"},
		Args: []string{"--secureGRPCAddr=" + secureAddr},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()

	// istiod's own serving certificate, signed with the plug-in CA.
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	var served []*x509.Certificate
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "istiod.istio-system.svc",
		VerifyConnection: func(cs tls.ConnectionState) error { served = cs.PeerCertificates; return nil }}
	conn, err := grpc.NewClient(secureAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// A workload certificate for apps/web, as istio-agent asks for it.
	secs := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts("apps").CreateToken(ctx, "web", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/apps/sa/web")
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}, URIs: []*url.URL{spiffe}}, key)
	if err != nil {
		t.Fatal(err)
	}
	rctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token, "clusterid", "primary")
	var resp *securityapi.IstioCertificateResponse
	for {
		resp, err = securityapi.NewIstioCertificateServiceClient(conn).CreateCertificate(rctx,
			&securityapi.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), ValidityDuration: 3600})
		if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "Unavailable") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("istiod did not sign the workload certificate: %v; istiod log:\n%s", err, tail(d.LogPath))
	}
	if len(served) == 0 {
		t.Fatal("no serving certificate seen")
	}
	inter := x509.NewCertPool()
	for _, c := range served[1:] {
		inter.AddCert(c)
	}
	if _, err := served[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "istiod.istio-system.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("istiod's serving certificate does not verify under the constrained intermediate: %v", err)
	}
	t.Logf("istiod serves with DNS names %v, issued by %q", served[0].DNSNames, served[0].Issuer.CommonName)

	var chain []*x509.Certificate
	for _, p := range resp.CertChain {
		for rest := []byte(p); ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, cert)
		}
	}
	if len(chain) == 0 {
		t.Fatal("empty certificate chain")
	}
	leaf := chain[0]
	inter = x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("workload certificate does not verify under the constrained intermediate: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffe.String() || leaf.Issuer.String() != im.Cert.Subject.String() {
		t.Errorf("workload certificate URIs %v issuer %q, want %s from the intermediate", leaf.URIs, leaf.Issuer.CommonName, spiffe)
	}
	t.Logf("istiod signed %v, issued by %q", leaf.URIs, leaf.Issuer.CommonName)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
