package framework

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/localproc"
)

// IstiodServerName is the name istiod's serving certificate is checked for.
const IstiodServerName = "istiod.istio-system.svc"

// CAIstiod is istiod running its CA from plug-in certificates (cacerts).
type CAIstiod struct {
	*localistiod.Istiod
	// SecureAddr is istiod's TLS gRPC address (its CA service).
	SecureAddr string
}

// StartCAIstiod starts istiod against the cluster of kubeconfig, in dir,
// with its CA signing from cacerts (the files of an istio-system/cacerts
// Secret: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) and a TLS
// gRPC port for the CA service. It stops when the test ends; its log tail
// is shown if the test failed.
func StartCAIstiod(t testing.TB, kubeconfig, dir string, cacerts map[string][]byte) *CAIstiod {
	t.Helper()
	caDir := filepath.Join(dir, "cacerts")
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range cacerts {
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
	d := StartIstiod(t, localistiod.Options{
		Kubeconfig: kubeconfig, Dir: dir, ClusterID: "primary",
		Env:  []string{"ENABLE_CA_SERVER=true", "ROOT_CA_DIR=" + caDir, "PILOT_CERT_PROVIDER=istiod"},
		Args: []string{"--secureGRPCAddr=" + secureAddr},
	})
	return &CAIstiod{Istiod: d, SecureAddr: secureAddr}
}

// StartIstiod starts istiod with opts until the test ends, showing the end
// of its log if the test failed.
func StartIstiod(t testing.TB, opts localistiod.Options) *localistiod.Istiod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	d, err := localistiod.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("istiod ready in %v, xDS on %s, log %s", time.Since(start).Round(time.Millisecond), d.GRPCAddr, d.LogPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", d.LogPath, localproc.TailFile(d.LogPath, 80))
		}
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// WorkloadCert is what istiod's CA gave a workload, and how istiod served.
type WorkloadCert struct {
	// Served is istiod's serving chain, as the TLS handshake showed it.
	Served []*x509.Certificate
	// Chain is the signed workload chain, leaf first.
	Chain []*x509.Certificate
	// SPIFFE is the identity asked for.
	SPIFFE *url.URL
}

// WorkloadCertificate asks istiod's CA at secureAddr (trusting roots, for
// istiod's serving certificate) for a certificate of namespace/serviceAccount
// in cluster, as istio-agent does: a token of the service account for the
// istio-ca audience, a CSR with the SPIFFE URI. It retries while the CA is
// not serving yet (Unavailable) until ctx ends.
func WorkloadCertificate(ctx context.Context, kube kubernetes.Interface, secureAddr string, roots *x509.CertPool, cluster, namespace, serviceAccount string) (*WorkloadCert, error) {
	out := &WorkloadCert{}
	conn, err := grpc.NewClient(secureAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: IstiodServerName,
		VerifyConnection: func(cs tls.ConnectionState) error { out.Served = cs.PeerCertificates; return nil }})))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	secs := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token of %s/%s for istio-ca: %w", namespace, serviceAccount, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	out.SPIFFE, _ = url.Parse("spiffe://cluster.local/ns/" + namespace + "/sa/" + serviceAccount)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{out.SPIFFE}}, key)
	if err != nil {
		return nil, err
	}
	rctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token, "clusterid", cluster)
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
		return nil, fmt.Errorf("istiod did not sign the workload certificate of %s: %w", out.SPIFFE, err)
	}
	for _, p := range resp.CertChain {
		for rest := []byte(p); ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing the workload chain: %w", err)
			}
			out.Chain = append(out.Chain, c)
		}
	}
	if len(out.Chain) == 0 {
		return nil, fmt.Errorf("istiod answered the CSR of %s with an empty certificate chain", out.SPIFFE)
	}
	if len(out.Served) == 0 {
		return nil, fmt.Errorf("no serving certificate of istiod seen")
	}
	return out, nil
}

// VerifyServing checks istiod's serving certificate for IstiodServerName
// under roots.
func (w *WorkloadCert) VerifyServing(roots *x509.CertPool) error {
	_, err := w.Served[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool(w.Served[1:]), DNSName: IstiodServerName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// Verify checks the workload chain under roots for usages.
func (w *WorkloadCert) Verify(roots *x509.CertPool, usages ...x509.ExtKeyUsage) error {
	_, err := w.Chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool(w.Chain[1:]), KeyUsages: usages})
	return err
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
