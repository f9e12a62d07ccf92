package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ParseRoots parses a bundle of root CA certificates (one or more PEM
// CERTIFICATE blocks; several while a root is rotated). Each must be a CA.
// No private key is accepted: a bundle that holds one is refused, so that a
// root key pasted by mistake is not kept.
func ParseRoots(bundle []byte) ([]*x509.Certificate, error) {
	if _, _, err := decodePrivateKey(bundle); err == nil || strings.Contains(err.Error(), "encrypted") {
		return nil, errors.New("it holds a private key; give only the root certificate, and keep its key outside the clusters")
	}
	certs, err := decodeCertificates(bundle)
	if err != nil {
		return nil, err
	}
	for i, c := range certs {
		if err := checkCA(c); err != nil {
			return nil, fmt.Errorf("certificate %d (%q): %w", i+1, c.Subject.CommonName, err)
		}
	}
	return certs, nil
}

// CACertsProblem is what is wrong with a user-supplied cacerts: the Secret
// keys concerned and why.
type CACertsProblem struct {
	// Keys are the cacerts data keys at fault (e.g. "ca-cert.pem").
	Keys []string
	// Problem says what is wrong with them.
	Problem string
}

func (p *CACertsProblem) Error() string {
	return strings.Join(p.Keys, ", ") + ": " + p.Problem
}

// ExternalCheck is the verdict on a user-supplied cacerts.
type ExternalCheck struct {
	// Intermediate is the cluster's intermediate CA (ca-cert.pem).
	Intermediate *x509.Certificate
	// Root is the configured root it chains to.
	Root *x509.Certificate
	// WarnAt is when the intermediate enters its warning window.
	WarnAt time.Time
	// Warnings do not stop the install: the intermediate expires soon, or it
	// lacks the constraints the operator gives the intermediates it issues.
	Warnings []string
}

// Keys of a kubernetes.io/tls Secret (cert-manager's output), which istiod
// also reads as its plug-in CA when tls.crt is present: tls.crt is the
// signing certificate (and any chain), tls.key its key, ca.crt the root.
const (
	TLSCertKey = "tls.crt"
	TLSKeyKey  = "tls.key"
	TLSRootKey = "ca.crt"
)

// pluginLayout names the keys of one of the two cacerts formats istiod reads.
type pluginLayout struct {
	cert, key, root, chain string
}

// layoutOf picks the format as istiod does (detectSigningCABundleAndCRL):
// tls.crt, when present, wins.
func layoutOf(data map[string][]byte) pluginLayout {
	if len(data[TLSCertKey]) > 0 {
		return pluginLayout{cert: TLSCertKey, key: TLSKeyKey, root: TLSRootKey}
	}
	return pluginLayout{cert: CACertKey, key: CAKeyKey, root: RootCertKey, chain: CertChainKey}
}

// CheckExternalCACerts checks a cluster's cacerts Secret data, supplied by
// the user, against the configured roots at now. Istio's plug-in format
// (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) and the
// kubernetes.io/tls format (tls.crt, tls.key, ca.crt) are read as istiod
// reads them:
//
//   - every key present; ca-cert.pem a CA whose key is ca-key.pem (not
//     encrypted, not a root's); cert-chain.pem is ca-cert.pem, any further
//     intermediates, then root-cert.pem (for the tls format: tls.crt's
//     certificates, then ca.crt);
//   - root-cert.pem is one of roots, and ca-cert.pem chains to it through
//     that chain at now (so neither is expired or not yet valid);
//
// and returns a *CACertsProblem for the first that fails. Missing name
// constraints (those of c, as IssueIntermediate sets them) and an
// intermediate within warnBefore of expiry (a third of its lifetime when
// warnBefore <= 0) are warnings.
func CheckExternalCACerts(data map[string][]byte, roots []*x509.Certificate, c Constraints, warnBefore time.Duration, now time.Time) (*ExternalCheck, error) {
	if len(roots) == 0 {
		return nil, errors.New("no root configured to check against")
	}
	l := layoutOf(data)
	var missing []string
	for _, k := range []string{l.cert, l.key, l.root, l.chain} {
		if k != "" && len(data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, &CACertsProblem{Keys: missing, Problem: "missing"}
	}
	intermediate, err := parseKeyPair(data[l.cert], data[l.key])
	if err != nil {
		return nil, &CACertsProblem{Keys: []string{l.cert, l.key}, Problem: err.Error()}
	}
	for _, r := range roots {
		if keyMatches(intermediate.Key, r) {
			return nil, &CACertsProblem{Keys: []string{l.cert, l.key}, Problem: fmt.Sprintf(
				"hold the root %q and its key: the root key must stay outside the cluster; put an intermediate signed by the root there instead", r.Subject.CommonName)}
		}
	}
	rootCerts, err := decodeCertificates(data[l.root])
	if err != nil {
		return nil, &CACertsProblem{Keys: []string{l.root}, Problem: err.Error()}
	}
	var root *x509.Certificate
	for _, rc := range rootCerts {
		for _, want := range roots {
			if rc.Equal(want) {
				root = want
				break
			}
		}
		if root != nil {
			break
		}
	}
	if root == nil {
		return nil, &CACertsProblem{Keys: []string{l.root}, Problem: fmt.Sprintf(
			"holds %q (SHA-256 %s), not the configured root %q (SHA-256 %s)",
			rootCerts[0].Subject.CommonName, Fingerprint(rootCerts[0]), roots[0].Subject.CommonName, Fingerprint(roots[0]))}
	}
	var chain []*x509.Certificate
	chainKeys := []string{l.chain}
	if l.chain != "" {
		if chain, err = decodeCertificates(data[l.chain]); err != nil {
			return nil, &CACertsProblem{Keys: []string{l.chain}, Problem: err.Error()}
		}
		if !chain[0].Equal(intermediate.Cert) {
			return nil, &CACertsProblem{Keys: []string{l.chain}, Problem: "does not start with " + l.cert}
		}
		if len(chain) < 2 || !chain[len(chain)-1].Equal(root) {
			return nil, &CACertsProblem{Keys: []string{l.chain}, Problem: "does not end with the root of " + l.root}
		}
	} else {
		// istiod's chain for the tls format: tls.crt, then ca.crt.
		chainKeys = nil
		certs, _ := decodeCertificates(data[l.cert])
		chain = append(certs, root)
	}
	cert := intermediate.Cert
	if now.After(cert.NotAfter) {
		return nil, &CACertsProblem{Keys: []string{l.cert}, Problem: "expired at " + formatTime(cert.NotAfter)}
	}
	if now.Before(cert.NotBefore) {
		return nil, &CACertsProblem{Keys: []string{l.cert}, Problem: "not valid before " + formatTime(cert.NotBefore)}
	}
	if err := checkValidity(root, now); err != nil {
		return nil, &CACertsProblem{Keys: []string{l.root}, Problem: "the root: " + err.Error()}
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(root)
	for _, ic := range chain[1 : len(chain)-1] {
		inter.AddCert(ic)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, &CACertsProblem{Keys: append([]string{l.cert}, chainKeys...), Problem: fmt.Sprintf(
			"%q does not chain to the configured root %q: %v", cert.Subject.CommonName, root.Subject.CommonName, err)}
	}
	check := &ExternalCheck{Intermediate: cert, Root: root, WarnAt: RenewalTime(cert, warnBefore)}
	if !now.Before(check.WarnAt) {
		// No "in N hours": the warning goes into status, which a steady
		// state must not rewrite.
		check.Warnings = append(check.Warnings, fmt.Sprintf("%s expires at %s; sign a new intermediate and replace the Secret before then",
			l.cert, formatTime(cert.NotAfter)))
	}
	if why := ConstraintsReason(cert, c); why != "" {
		check.Warnings = append(check.Warnings, fmt.Sprintf(
			"%s lacks the constraints meshfleet puts on the intermediates it issues (%s): whoever holds %s can sign more than this cluster's workload identities; sign it with meshctl ca sign-intermediate, or add the equivalent name constraints, path length 0 and EKUs serverAuth, clientAuth",
			l.cert, why, l.key))
	}
	return check, nil
}

// ClusterPluginCerts issues the intermediate of cluster from root, with the
// constraints of ClusterConstraints(namespace, primary), valid for ttl from
// now, and returns it as a cacerts Secret's content: what the operator
// issues in self-signed mode, for a root the operator never sees
// (`meshctl ca sign-intermediate`, run where the root key is).
func ClusterPluginCerts(root *KeyPair, cluster, namespace string, primary bool, ttl time.Duration, now time.Time) (PluginCerts, error) {
	im, err := IssueIntermediate(root, IntermediateOptions{ClusterName: cluster, TTL: ttl, Now: now,
		Constraints: ClusterConstraints(namespace, primary)})
	if err != nil {
		return PluginCerts{}, err
	}
	return NewPluginCerts(root, im), nil
}

// ParsePrivateKey returns the first private key of PEM data (PKCS#1 RSA,
// SEC1 EC or PKCS#8).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	key, _, err := decodePrivateKey(data)
	return key, err
}
