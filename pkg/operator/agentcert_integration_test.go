//go:build integration

package operator_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// startIssuedAgent waits for the agent certificate the operator issues for
// remote3 in the primary (what `meshctl cluster join --tunnel` prints),
// applies it in remote3 as the agent's Secret, and runs the agent with it.
func (h *remoteHarness) startIssuedAgent(t *testing.T) func() {
	key := client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.AgentSecretName("remote3")}
	issued := &corev1.Secret{}
	eventually(t, "the bootstrap agent certificate", func() error { return h.clients["primary"].Get(h.ctx, key, issued) })
	leaf := leafOf(t, issued.Data[corev1.TLSCertKey])
	h.checkAgentCert(t, leaf, issued.Data[meshca.TunnelCAKey])
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > meshca.AgentCertTTL+2*time.Minute {
		t.Errorf("bootstrap agent certificate lives %v, want at most %v", life, meshca.AgentCertTTL)
	}

	remote := h.clients["remote3"]
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: meshca.Namespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshca.Namespace, Name: meshca.AgentTLSSecretName}, Type: corev1.SecretTypeTLS, Data: issued.Data},
	} {
		if err := remote.Create(h.ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cert, err := tls.X509KeyPair(issued.Data[corev1.TLSCertKey], issued.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	roots, err := tunnel.CABundleFromPEM(issued.Data[meshca.TunnelCAKey])
	if err != nil {
		t.Fatal(err)
	}
	// The agent forwards with its own token, under agent.yaml's RBAC.
	upstream, err := tunnel.InstallAgentRBAC(h.ctx, h.env.Cluster("remote3").Config, 3600)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: "remote3", ID: "agent-remote3", Servers: []string{h.tunnel.AgentURL},
		Certificate: tunnel.StaticKeyPair(cert), ServerCAs: roots, Upstream: upstream,
		BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// checkAgentCert: an agent certificate of remote3 from the tunnel CA (and
// not from the mesh root), whose ca.crt is the tunnel CA.
func (h *remoteHarness) checkAgentCert(t *testing.T, leaf *x509.Certificate, caPEM []byte) {
	t.Helper()
	if !bytes.Equal(caPEM, h.tunnelCA.CertPEM) {
		t.Errorf("the agent's ca.crt is not the tunnel CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.tunnelCA.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("agent certificate does not chain to the tunnel CA: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tunnel.AgentIdentityURI("remote3").String() {
		t.Errorf("agent certificate URIs %v, want %s", leaf.URIs, tunnel.AgentIdentityURI("remote3"))
	}
}

// agentRenewal puts a certificate due for renewal in remote3's agent Secret
// and waits for the operator to replace it through the tunnel, and to
// publish its expiry.
func (h *remoteHarness) agentRenewal(t *testing.T) {
	due, err := tunnel.IssueAgentCertificate(h.tunnelCA, "remote3", tunnel.CertificateOptions{TTL: 20 * time.Second, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	remote := h.clients["remote3"]
	s := &corev1.Secret{}
	h.get("remote3", meshca.Namespace, meshca.AgentTLSSecretName, s)
	s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey] = due.CertPEM, due.KeyPEM
	if err := remote.Update(h.ctx, s); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var renewed *x509.Certificate
	eventually(t, "the agent certificate renewed in remote3", func() error {
		if err := remote.Get(h.ctx, client.ObjectKeyFromObject(s), s); err != nil {
			return err
		}
		if bytes.Equal(s.Data[corev1.TLSCertKey], due.CertPEM) {
			return fmt.Errorf("agent certificate not renewed yet")
		}
		renewed = leafOf(t, s.Data[corev1.TLSCertKey])
		return nil
	})
	t.Logf("BENCH due agent certificate → renewed through the tunnel: %v", time.Since(start).Round(time.Millisecond))
	h.checkAgentCert(t, renewed, s.Data[meshca.TunnelCAKey])
	if _, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
		t.Errorf("renewed certificate and key do not match: %v", err)
	}
	if left := time.Until(renewed.NotAfter); left < meshca.AgentCertTTL-time.Hour {
		t.Errorf("renewed certificate expires in %v, want about %v", left, meshca.AgentCertTTL)
	}
	eventually(t, "the agent certificate expiry metric", func() error {
		got := expiryMetric(t, "remote3", "tunnel-agent")
		if got != float64(renewed.NotAfter.Unix()) {
			return fmt.Errorf("expiry metric %v, want %v", got, renewed.NotAfter.Unix())
		}
		return nil
	})
}

// expiryMetric reads meshfleet_operator_certificate_expiry_timestamp_seconds
// from the operator's registry.
func expiryMetric(t *testing.T, cluster, certificate string) float64 {
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshfleet_operator_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["cluster"] == cluster && labels["certificate"] == certificate {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatalf("no PEM certificate in %q", certPEM)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
