package ca

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// ReissueReason says why a cluster's cacerts Secret data must be (re)issued
// from root for clusterName; "" means it is fine. The checks, in order:
//
//   - "missing" when none of the keys is present, "missing <keys>" when some are;
//   - "invalid: <why>" when the data does not parse as a consistent cacerts;
//   - "root changed" when root-cert.pem is not root, or ca-cert.pem does not
//     chain to root;
//   - "issued for cluster <name>" when ca-cert.pem belongs to another cluster;
//   - "not valid before <time>" when ca-cert.pem is not valid yet;
//   - "expires at <time>" when now is at or past RenewalTime, or "expired at
//     <time>" when ca-cert.pem has already expired.
func ReissueReason(data map[string][]byte, root *KeyPair, clusterName string, renewBefore time.Duration, now time.Time) string {
	switch missing := missingKeys(data); len(missing) {
	case 0:
	case len(pluginKeys):
		return "missing"
	default:
		return "missing " + strings.Join(missing, ", ")
	}
	intermediate, rootCert, err := parsePluginData(data)
	if err != nil {
		return "invalid: " + err.Error()
	}
	if root == nil || root.Cert == nil {
		return "invalid: no root CA given to compare against"
	}
	if !rootCert.Equal(root.Cert) || !chainsTo(intermediate.Cert, root.Cert) {
		return "root changed"
	}
	if got := ClusterOf(intermediate.Cert); got != clusterName {
		return fmt.Sprintf("issued for cluster %q", got)
	}
	cert := intermediate.Cert
	if now.Before(cert.NotBefore) {
		return "not valid before " + formatTime(cert.NotBefore)
	}
	if now.After(cert.NotAfter) {
		return "expired at " + formatTime(cert.NotAfter)
	}
	if !now.Before(RenewalTime(cert, renewBefore)) {
		return "expires at " + formatTime(cert.NotAfter)
	}
	return ""
}

// RenewalTime returns when cert should be renewed: NotAfter minus renewBefore.
// When renewBefore <= 0, or when it is not shorter than cert's lifetime (which
// would demand renewal as soon as cert is issued, e.g. when an intermediate is
// capped at a root's near expiry), it is one third of the lifetime before
// NotAfter. A nil cert yields the zero time.
func RenewalTime(cert *x509.Certificate, renewBefore time.Duration) time.Time {
	if cert == nil {
		return time.Time{}
	}
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	if renewBefore <= 0 || renewBefore >= lifetime {
		renewBefore = lifetime / 3
	}
	return cert.NotAfter.Add(-renewBefore)
}

// chainsTo reports whether cert verifies against root at some time when both
// are valid, so that an expired cert still counts as issued by root.
func chainsTo(cert, root *x509.Certificate) bool {
	at := cert.NotBefore
	if root.NotBefore.After(at) {
		at = root.NotBefore
	}
	return VerifyChain(cert, root, at) == nil
}
