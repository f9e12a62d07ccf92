package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/meshfleet/meshfleet/pkg/ca"
)

// certificateBackdate is how far NotBefore is set in the past, for peers whose
// clocks lag.
const certificateBackdate = time.Minute

// CertificateOptions configures IssueAgentCertificate and
// IssueServerCertificate.
type CertificateOptions struct {
	// TTL is how long the certificate is valid; it must be positive. The
	// certificate never outlives its issuer.
	TTL time.Duration
	// Now is the current time; it must be set.
	Now time.Time
}

// Certificate is an issued leaf certificate with its private key.
type Certificate struct {
	// CertPEM is the leaf followed by its issuer when the issuer is not a
	// self-signed root, so that a peer that trusts only the root can build
	// the chain.
	CertPEM []byte
	// KeyPEM is the leaf's PKCS#8 private key.
	KeyPEM []byte
}

// TLSCertificate returns c for use in a tls.Config.
func (c *Certificate) TLSCertificate() (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load tunnel certificate: %w", err)
	}
	return cert, nil
}

// IssueAgentCertificate issues the client certificate of a tunnel agent for
// cluster, signed by issuer: normally the cluster's intermediate CA from
// ca.IssueIntermediate, or the mesh root. The certificate carries the
// cluster in its URI SAN (AgentIdentityURI) and Subject OU.
func IssueAgentCertificate(issuer *ca.KeyPair, cluster string, opts CertificateOptions) (*Certificate, error) {
	if err := validateClusterName(cluster); err != nil {
		return nil, fmt.Errorf("issue tunnel agent certificate: %w", err)
	}
	if other := ca.ClusterOf(issuerCert(issuer)); other != "" && other != cluster {
		return nil, fmt.Errorf("issue tunnel agent certificate for cluster %q: issuer is the intermediate CA of cluster %q; use cluster %q's intermediate or the root", cluster, other, cluster)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{OrganizationalUnit: []string{cluster}, CommonName: agentCommonName},
		URIs:        []*url.URL{AgentIdentityURI(cluster)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	c, err := issueLeaf(issuer, tmpl, opts)
	if err != nil {
		return nil, fmt.Errorf("issue tunnel agent certificate for cluster %q: %w", cluster, err)
	}
	return c, nil
}

// IssueServerCertificate issues the serving certificate of a tunnel server
// for hosts (DNS names or IP addresses), signed by issuer.
func IssueServerCertificate(issuer *ca.KeyPair, hosts []string, opts CertificateOptions) (*Certificate, error) {
	if len(hosts) == 0 {
		return nil, errors.New("issue tunnel server certificate: no host names given; pass the DNS names and IPs agents and clients dial")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	c, err := issueLeaf(issuer, tmpl, opts)
	if err != nil {
		return nil, fmt.Errorf("issue tunnel server certificate for %v: %w", hosts, err)
	}
	return c, nil
}

func issuerCert(issuer *ca.KeyPair) *x509.Certificate {
	if issuer == nil {
		return nil
	}
	return issuer.Cert
}

// issueLeaf fills in the serial, validity, key usage and key of tmpl and signs
// it with issuer.
func issueLeaf(issuer *ca.KeyPair, tmpl *x509.Certificate, opts CertificateOptions) (*Certificate, error) {
	if issuer == nil || issuer.Cert == nil || issuer.Key == nil {
		return nil, errors.New("issuer CA certificate and key are required")
	}
	if opts.TTL <= 0 {
		return nil, fmt.Errorf("ttl must be positive, got %s", opts.TTL)
	}
	if opts.Now.IsZero() {
		return nil, errors.New("now must be set")
	}
	if opts.Now.After(issuer.Cert.NotAfter) {
		return nil, fmt.Errorf("issuer %q expired at %s", issuer.Cert.Subject.CommonName, issuer.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	tmpl.NotBefore = opts.Now.Add(-certificateBackdate)
	tmpl.NotAfter = opts.Now.Add(opts.TTL)
	if tmpl.NotAfter.After(issuer.Cert.NotAfter) {
		tmpl.NotAfter = issuer.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if !isSelfSigned(issuer.Cert) {
		certPEM = append(certPEM, issuer.CertPEM...)
	}
	return &Certificate{
		CertPEM: certPEM,
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}
