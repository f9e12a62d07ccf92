package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// intermediateCNPrefix prefixes the cluster name in an intermediate's Subject CN.
const intermediateCNPrefix = "meshfleet intermediate CA "

// IntermediateOptions configures IssueIntermediate.
type IntermediateOptions struct {
	// ClusterName is the cluster the intermediate is for; it is required and
	// recorded in the Subject (OU, and CN "meshfleet intermediate CA <cluster>").
	ClusterName string
	// TTL is how long the intermediate is valid; it must be positive. The
	// intermediate never outlives the root.
	TTL time.Duration
	// Now is the current time; it must be set.
	Now time.Time
	// Constraints limit what the intermediate may sign.
	Constraints Constraints
}

// IssueIntermediate issues a cluster's intermediate CA, signed by root, with a
// new ECDSA P-256 key, path length 0 (it cannot sign further CAs), extended
// key usages serverAuth and clientAuth, and the name constraints of
// opts.Constraints. It is valid from one minute before Now until Now plus TTL
// or the root's expiry, whichever comes first.
func IssueIntermediate(root *KeyPair, opts IntermediateOptions) (*KeyPair, error) {
	if err := checkIssuer(root, opts.Now); err != nil {
		return nil, fmt.Errorf("issue intermediate CA: %w", err)
	}
	cluster := opts.ClusterName
	if strings.TrimSpace(cluster) == "" {
		return nil, errors.New("issue intermediate CA: cluster name is required")
	}
	if opts.TTL <= 0 {
		return nil, fmt.Errorf("issue intermediate CA for cluster %q: ttl must be positive, got %s", cluster, opts.TTL)
	}
	notAfter := opts.Now.Add(opts.TTL)
	if notAfter.After(root.Cert.NotAfter) {
		notAfter = root.Cert.NotAfter
	}
	key, err := generateKey()
	if err != nil {
		return nil, fmt.Errorf("issue intermediate CA for cluster %q: %w", cluster, err)
	}
	subject := pkix.Name{
		Organization:       slices.Clone(root.Cert.Subject.Organization),
		OrganizationalUnit: []string{cluster},
		CommonName:         intermediateCNPrefix + cluster,
	}
	template, err := caTemplate(subject, key, opts.Now, notAfter)
	if err != nil {
		return nil, fmt.Errorf("issue intermediate CA for cluster %q: %w", cluster, err)
	}
	template.MaxPathLen = 0
	template.MaxPathLenZero = true
	opts.Constraints.apply(template)
	template.AuthorityKeyId = slices.Clone(root.Cert.SubjectKeyId)
	intermediate, err := sign(template, root.Cert, root.Key, key)
	if err != nil {
		return nil, fmt.Errorf("issue intermediate CA for cluster %q: %w", cluster, err)
	}
	return intermediate, nil
}

// checkIssuer reports whether root can sign an intermediate CA at now.
func checkIssuer(root *KeyPair, now time.Time) error {
	if root == nil || root.Cert == nil || root.Key == nil {
		return errors.New("root CA certificate and key are required")
	}
	if now.IsZero() {
		return errors.New("now must be set")
	}
	if err := checkCA(root.Cert); err != nil {
		return fmt.Errorf("root CA: %w", err)
	}
	if root.Cert.MaxPathLenZero && root.Cert.MaxPathLen == 0 {
		return errors.New("root CA has pathLenConstraint 0 and cannot sign intermediate CAs")
	}
	if !keyMatches(root.Key, root.Cert) {
		return errors.New("root CA: private key does not match certificate")
	}
	if !now.Before(root.Cert.NotAfter) {
		return fmt.Errorf("root CA expired at %s", formatTime(root.Cert.NotAfter))
	}
	if now.Before(root.Cert.NotBefore) {
		return fmt.Errorf("root CA is not valid before %s", formatTime(root.Cert.NotBefore))
	}
	return nil
}

// ClusterOf returns the cluster name recorded in an intermediate issued by
// IssueIntermediate, or "" if cert is not such an intermediate.
func ClusterOf(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	ou := cert.Subject.OrganizationalUnit
	if len(ou) != 1 || ou[0] == "" || cert.Subject.CommonName != intermediateCNPrefix+ou[0] {
		return ""
	}
	return ou[0]
}
