package ca

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// Secret data keys of Istio's plug-in CA Secret "cacerts".
const (
	// CACertKey holds the cluster's intermediate CA certificate.
	CACertKey = "ca-cert.pem"
	// CAKeyKey holds the intermediate CA's private key.
	CAKeyKey = "ca-key.pem"
	// RootCertKey holds the mesh root CA certificate.
	RootCertKey = "root-cert.pem"
	// CertChainKey holds the intermediate certificate followed by the root.
	CertChainKey = "cert-chain.pem"
)

// pluginKeys lists every key a complete cacerts Secret holds.
var pluginKeys = []string{CACertKey, CAKeyKey, RootCertKey, CertChainKey}

// PluginCerts is the content of Istio's cacerts Secret.
type PluginCerts struct {
	// CACert is the intermediate CA certificate (ca-cert.pem).
	CACert []byte
	// CAKey is the intermediate CA private key (ca-key.pem).
	CAKey []byte
	// RootCert is the root CA certificate (root-cert.pem).
	RootCert []byte
	// CertChain is CACert followed by RootCert (cert-chain.pem).
	CertChain []byte
}

// NewPluginCerts returns the cacerts content for intermediate, issued by root.
// A nil key pair contributes empty fields.
func NewPluginCerts(root, intermediate *KeyPair) PluginCerts {
	var p PluginCerts
	if intermediate != nil {
		p.CACert = bytes.Clone(intermediate.CertPEM)
		p.CAKey = bytes.Clone(intermediate.KeyPEM)
	}
	if root != nil {
		p.RootCert = bytes.Clone(root.CertPEM)
	}
	p.CertChain = joinPEM(p.CACert, p.RootCert)
	return p
}

// Data returns p as Secret data, keyed by CACertKey, CAKeyKey, RootCertKey and
// CertChainKey.
func (p PluginCerts) Data() map[string][]byte {
	return map[string][]byte{
		CACertKey:    p.CACert,
		CAKeyKey:     p.CAKey,
		RootCertKey:  p.RootCert,
		CertChainKey: p.CertChain,
	}
}

// ParsePluginCerts parses cacerts Secret data into the intermediate CA and the
// root certificate. It fails if a key is missing or unparsable, if cert-chain.pem
// is not ca-cert.pem followed by root-cert.pem, if a certificate is not valid
// at now, or if the intermediate does not chain to the root at now.
func ParsePluginCerts(data map[string][]byte, now time.Time) (*KeyPair, *x509.Certificate, error) {
	intermediate, root, err := parsePluginData(data)
	if err != nil {
		return nil, nil, err
	}
	if err := checkValidity(intermediate.Cert, now); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CACertKey, err)
	}
	if err := checkValidity(root, now); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", RootCertKey, err)
	}
	if err := VerifyChain(intermediate.Cert, root, now); err != nil {
		return nil, nil, fmt.Errorf("%s does not chain to %s: %w", CACertKey, RootCertKey, err)
	}
	return intermediate, root, nil
}

// parsePluginData is ParsePluginCerts without the checks that depend on time.
func parsePluginData(data map[string][]byte) (*KeyPair, *x509.Certificate, error) {
	if missing := missingKeys(data); len(missing) > 0 {
		return nil, nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	intermediate, err := parseKeyPair(data[CACertKey], data[CAKeyKey])
	if err != nil {
		return nil, nil, fmt.Errorf("%s, %s: %w", CACertKey, CAKeyKey, err)
	}
	root, err := decodeCertificate(data[RootCertKey])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", RootCertKey, err)
	}
	if err := checkCA(root); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", RootCertKey, err)
	}
	chain, err := decodeCertificates(data[CertChainKey])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CertChainKey, err)
	}
	if !chain[0].Equal(intermediate.Cert) {
		return nil, nil, fmt.Errorf("%s does not start with %s", CertChainKey, CACertKey)
	}
	if len(chain) < 2 || !chain[len(chain)-1].Equal(root) {
		return nil, nil, fmt.Errorf("%s does not end with %s", CertChainKey, RootCertKey)
	}
	return intermediate, root, nil
}

// missingKeys returns the cacerts keys that are absent or empty in data.
func missingKeys(data map[string][]byte) []string {
	var missing []string
	for _, k := range pluginKeys {
		if len(data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	return missing
}

// joinPEM concatenates PEM documents, ending each with a newline.
func joinPEM(docs ...[]byte) []byte {
	var out []byte
	for _, d := range docs {
		if len(d) == 0 {
			continue
		}
		out = append(out, d...)
		if !bytes.HasSuffix(d, []byte("\n")) {
			out = append(out, '\n')
		}
	}
	return out
}
