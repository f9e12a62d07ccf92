package meshca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// The tunnel's own CA and the agent certificates it issues.
const (
	// TunnelCASecretName holds the tunnel CA and its key, in Namespace. It
	// issues the tunnel server's serving certificate and the agents' client
	// certificates, and nothing else: the tunnel's clients (operator, istiod,
	// locality server, meshctl) and agents trust only it for the tunnel, and
	// the server accepts only agents it signed. A cluster's intermediate
	// (cacerts), whose key that cluster's admin holds, cannot pose as either.
	TunnelCASecretName = "meshfleet-tunnel-ca"
	// TunnelCATTL is the lifetime of the tunnel CA the operator creates.
	TunnelCATTL = 10 * 365 * 24 * time.Hour
	// AgentSecretPrefix prefixes the cluster name in the Secret of the
	// primary (in Namespace) that holds a tunnelled cluster's agent
	// certificate, for `meshctl cluster join --tunnel` to print.
	AgentSecretPrefix = "meshfleet-tunnel-agent-"
	// AgentTLSSecretName is the agent's own Secret in its cluster
	// (Namespace/AgentTLSSecretName, manifests/tunnel/agent.yaml), which the
	// operator renews through the tunnel.
	AgentTLSSecretName = "meshfleet-tunnel-agent-tls"
	// AgentCertTTL is the lifetime of an agent certificate. It is renewed
	// when a third of it is left (ca.RenewalTime), through the tunnel while
	// the agent is connected.
	AgentCertTTL = 7 * 24 * time.Hour
	// TunnelCAKey is the key of the tunnel CA certificate in an agent's
	// Secret, which the agent verifies the tunnel server with.
	TunnelCAKey = "ca.crt"
)

const tunnelCADescription = "CA of the meshfleet tunnel: it signs the tunnel server's certificate and the agents' certificates, nothing else. Its key never leaves this namespace; deleting it makes the operator create a new one, and every agent and the tunnel server then need new certificates."

// TunnelCA returns the tunnel's CA from Namespace/TunnelCASecretName,
// creating it on first use. created reports that it was created now.
func TunnelCA(ctx context.Context, c client.Client, now time.Time) (kp *ca.KeyPair, created bool, err error) {
	key := client.ObjectKey{Namespace: Namespace, Name: TunnelCASecretName}
	kp, err = loadCA(ctx, c, key, now)
	if err != nil || kp != nil {
		return kp, false, err
	}
	kp, err = ca.NewRoot(ca.RootOptions{TTL: TunnelCATTL, Now: now, CommonName: "meshfleet tunnel CA"})
	if err != nil {
		return nil, false, permanent("creating the tunnel CA failed: %v", err)
	}
	if err := createCA(ctx, c, key, kp, "tunnel-ca", tunnelCADescription); err != nil {
		return nil, false, err
	}
	return kp, true, nil
}

// AgentSecretName is the name of the primary's Secret with cluster's agent
// certificate.
func AgentSecretName(cluster string) string { return AgentSecretPrefix + cluster }

// LeafCert is a certificate of the tunnel CA as Secret data (tls.crt,
// tls.key, ca.crt), with when it expires and when it is due for renewal.
type LeafCert struct {
	// Data is the Secret data.
	Data map[string][]byte
	// NotAfter is when the certificate expires.
	NotAfter time.Time
	// RenewAt is when it must be replaced.
	RenewAt time.Time
	// Reissued says why a new certificate was issued now; "" when the live
	// one was kept.
	Reissued string
}

// AgentCertificate returns the agent certificate of cluster for a Secret
// whose live data is live: kept while it is a certificate of tunnelCA for
// cluster that is not due for renewal (a third of its lifetime before
// expiry), else a new one valid for ttl. It is pure apart from the key
// generation.
func AgentCertificate(live map[string][]byte, tunnelCA *ca.KeyPair, cluster string, ttl time.Duration, now time.Time) (*LeafCert, error) {
	check := func(data map[string][]byte) (*x509.Certificate, string) {
		return agentLeaf(data, tunnelCA, cluster, now)
	}
	issue := func() (*tunnel.Certificate, error) {
		return tunnel.IssueAgentCertificate(tunnelCA, cluster, tunnel.CertificateOptions{TTL: ttl, Now: now})
	}
	return keepOrIssue(live, tunnelCA, now, check, issue, "the tunnel agent certificate of cluster "+cluster)
}

// keepOrIssue keeps the certificate in live while check accepts it and it
// is not due for renewal (a third of its lifetime before expiry), else
// issues a new one and checks it too. what names the certificate in errors.
func keepOrIssue(live map[string][]byte, tunnelCA *ca.KeyPair, now time.Time,
	check func(map[string][]byte) (*x509.Certificate, string), issue func() (*tunnel.Certificate, error), what string) (*LeafCert, error) {
	leaf, why := check(live)
	if why == "" && !now.Before(ca.RenewalTime(leaf, 0)) {
		why = "expires at " + leaf.NotAfter.UTC().Format(time.RFC3339)
	}
	if why == "" {
		return &LeafCert{Data: live, NotAfter: leaf.NotAfter, RenewAt: ca.RenewalTime(leaf, 0)}, nil
	}
	c, err := issue()
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", what, err)
	}
	data := map[string][]byte{corev1.TLSCertKey: c.CertPEM, corev1.TLSPrivateKeyKey: c.KeyPEM, TunnelCAKey: tunnelCA.CertPEM}
	leaf, why2 := check(data)
	if why2 != "" {
		return nil, fmt.Errorf("%s as issued is not usable (%s); this is a meshfleet bug", what, why2)
	}
	return &LeafCert{Data: data, NotAfter: leaf.NotAfter, RenewAt: ca.RenewalTime(leaf, 0), Reissued: why}, nil
}

// agentLeaf parses the agent certificate in data and says why it cannot be
// kept ("" when it can).
func agentLeaf(data map[string][]byte, tunnelCA *ca.KeyPair, cluster string, now time.Time) (*x509.Certificate, string) {
	leaf, why := parseLeaf(data, tunnelCA)
	if why != "" {
		return nil, why
	}
	roots := x509.NewCertPool()
	roots.AddCert(tunnelCA.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, "not a valid client certificate of the tunnel CA: " + err.Error()
	}
	want := tunnel.AgentIdentityURI(cluster).String()
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		return nil, fmt.Sprintf("not issued for cluster %s (URI SAN %s)", cluster, want)
	}
	return leaf, ""
}

// TLSSecret is a kubernetes.io/tls Secret with a certificate the operator
// keeps (an agent's, the tunnel server's).
func TLSSecret(namespace, name string, labels map[string]string, data map[string][]byte) (*unstructured.Unstructured, error) {
	s := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Type:       corev1.SecretTypeTLS,
		Data:       data,
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		return nil, fmt.Errorf("converting Secret %s/%s: %w", namespace, name, err)
	}
	obj := &unstructured.Unstructured{Object: u}
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	return obj, nil
}

// Tunnel server certificates, which the operator keeps when it is told the
// server's names, so that no one needs the tunnel CA's key outside
// Namespace.
const (
	// ServerTLSSecretName is the tunnel server's Secret in Namespace
	// (manifests/tunnel/server.yaml): the operator owns its tls.crt, tls.key
	// and ca.crt; client-ca.crt stays the installer's.
	ServerTLSSecretName = render.TunnelServerTLSSecretName
	// ServerCertTTL is the lifetime of a tunnel server certificate; it is
	// renewed when a third of it is left.
	ServerCertTTL = 30 * 24 * time.Hour
)

// ServerCertificate returns the tunnel server's certificate for hosts (DNS
// names or IP addresses) for a Secret whose live data is live: kept while it
// is a serving certificate of tunnelCA for every host that is not due for
// renewal, else a new one valid for ttl.
func ServerCertificate(live map[string][]byte, tunnelCA *ca.KeyPair, hosts []string, ttl time.Duration, now time.Time) (*LeafCert, error) {
	check := func(data map[string][]byte) (*x509.Certificate, string) {
		return serverLeaf(data, tunnelCA, hosts, now)
	}
	issue := func() (*tunnel.Certificate, error) {
		return tunnel.IssueServerCertificate(tunnelCA, hosts, tunnel.CertificateOptions{TTL: ttl, Now: now})
	}
	return keepOrIssue(live, tunnelCA, now, check, issue, "the tunnel server certificate")
}

// serverLeaf parses the server certificate in data and says why it cannot
// be kept ("" when it can).
func serverLeaf(data map[string][]byte, tunnelCA *ca.KeyPair, hosts []string, now time.Time) (*x509.Certificate, string) {
	leaf, why := parseLeaf(data, tunnelCA)
	if why != "" {
		return nil, why
	}
	roots := x509.NewCertPool()
	roots.AddCert(tunnelCA.Cert)
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, DNSName: h, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return nil, fmt.Sprintf("not a valid serving certificate of the tunnel CA for %s: %v", h, err)
		}
	}
	return leaf, ""
}

// parseLeaf parses the certificate and key in data, issued under tunnelCA.
func parseLeaf(data map[string][]byte, tunnelCA *ca.KeyPair) (*x509.Certificate, string) {
	if len(data[corev1.TLSCertKey]) == 0 || len(data[corev1.TLSPrivateKeyKey]) == 0 {
		return nil, "missing"
	}
	if !bytes.Equal(data[TunnelCAKey], tunnelCA.CertPEM) {
		return nil, "tunnel CA changed"
	}
	pair, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, "invalid: " + err.Error()
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, "invalid: " + err.Error()
	}
	return leaf, ""
}
