package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// VerifyChain verifies that cert chains to root at time now, accepting any
// extended key usage.
func VerifyChain(cert, root *x509.Certificate, now time.Time) error {
	if cert == nil || root == nil {
		return errors.New("verify certificate chain: certificate and root are required")
	}
	if now.IsZero() {
		return errors.New("verify certificate chain: now must be set")
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("verify %q against root %q: %w", cert.Subject.CommonName, root.Subject.CommonName, err)
	}
	return nil
}

// Fingerprint returns cert's SHA-256 fingerprint as upper-case hex pairs
// separated by colons, e.g. "AB:01:...". A nil cert yields "".
func Fingerprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	var b strings.Builder
	b.Grow(len(sum) * 3)
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}
