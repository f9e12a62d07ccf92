package ca

import (
	"crypto/x509"
	"fmt"
	"net"
	"slices"
)

// DefaultTrustDomain is Istio's default SPIFFE trust domain.
const DefaultTrustDomain = "cluster.local"

// intermediateEKUs are the extended key usages of a cluster's intermediate:
// what workload and istiod certificates need, and nothing else (no code or
// document signing, no OCSP).
var intermediateEKUs = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// Constraints are the names a cluster's intermediate may sign. A remote
// cluster's admin holds its intermediate's key (cacerts), so the constraints
// are what keeps that key from minting identities outside the mesh: x509
// verification rejects any certificate below the intermediate that names
// something else.
type Constraints struct {
	// TrustDomain is the mesh's SPIFFE trust domain: URI SANs must be
	// spiffe://<TrustDomain>/...; DefaultTrustDomain when empty.
	TrustDomain string
	// DNSNames are the only DNS names allowed (istiod's serving certificate
	// in the cluster that runs it, e.g. istiod.istio-system.svc); none when
	// empty.
	DNSNames []string
}

// istiodServiceNames are the Services istiod names in its own serving
// certificate, which it signs with the plug-in CA (getDNSNames in
// istio.io/istio/pilot/pkg/bootstrap/server.go): <name>.<namespace>.svc.
var istiodServiceNames = []string{"istiod", "istiod-remote", "istio-pilot"}

// ClusterConstraints are the names a cluster's intermediate may sign:
// workload identities of the default trust domain everywhere, and istiod's
// serving names (in namespace) only in a primary, which runs istiod. A
// remote's intermediate, whose key the remote's admin holds, can sign no
// DNS name at all.
func ClusterConstraints(namespace string, primary bool) Constraints {
	c := Constraints{TrustDomain: DefaultTrustDomain}
	if primary {
		for _, n := range istiodServiceNames {
			c.DNSNames = append(c.DNSNames, n+"."+namespace+".svc")
		}
	}
	return c
}

// trustDomain returns c's trust domain with the default applied.
func (c Constraints) trustDomain() string {
	if c.TrustDomain == "" {
		return DefaultTrustDomain
	}
	return c.TrustDomain
}

// apply puts c into an intermediate's template: critical name constraints
// (URIs in the trust domain; DNS names as listed, or none; no IP addresses
// and no e-mail addresses) and the intermediate's EKUs.
func (c Constraints) apply(t *x509.Certificate) {
	t.PermittedDNSDomainsCritical = true
	t.PermittedURIDomains = []string{c.trustDomain()}
	if len(c.DNSNames) > 0 {
		t.PermittedDNSDomains = slices.Clone(c.DNSNames)
	} else {
		// An empty dNSName constraint matches every name (RFC 5280 4.2.1.10).
		t.ExcludedDNSDomains = []string{""}
	}
	t.ExcludedIPRanges = []*net.IPNet{
		{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
	}
	t.ExcludedEmailAddresses = []string{""}
	t.ExtKeyUsage = slices.Clone(intermediateEKUs)
}

// ConstraintsReason says why cert, an intermediate, does not carry the
// constraints c; "" when it does. An intermediate issued before meshfleet
// constrained them is reissued on this.
func ConstraintsReason(cert *x509.Certificate, c Constraints) string {
	if cert == nil {
		return "no certificate"
	}
	if !cert.PermittedDNSDomainsCritical || !slices.Equal(cert.PermittedURIDomains, []string{c.trustDomain()}) {
		return fmt.Sprintf("not constrained to trust domain %s", c.trustDomain())
	}
	want := c.DNSNames
	if len(want) == 0 {
		if len(cert.PermittedDNSDomains) > 0 || !slices.Equal(cert.ExcludedDNSDomains, []string{""}) {
			return "may sign DNS names"
		}
	} else if !slices.Equal(cert.PermittedDNSDomains, want) {
		return fmt.Sprintf("DNS names %v, want %v", cert.PermittedDNSDomains, want)
	}
	if len(cert.ExcludedIPRanges) != 2 {
		return "may sign IP addresses"
	}
	if !slices.Equal(cert.ExtKeyUsage, intermediateEKUs) || len(cert.UnknownExtKeyUsage) > 0 {
		return "extended key usages are not serverAuth, clientAuth"
	}
	if !cert.MaxPathLenZero || cert.MaxPathLen != 0 {
		return "may sign CAs (path length is not 0)"
	}
	return ""
}
