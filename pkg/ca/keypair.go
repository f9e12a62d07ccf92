package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// KeyPair is a CA certificate with its private key, parsed and PEM-encoded.
type KeyPair struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// Key is the private key matching Cert.
	Key crypto.Signer
	// CertPEM is Cert as a single PEM CERTIFICATE block.
	CertPEM []byte
	// KeyPEM is Key as a single PEM private key block.
	KeyPEM []byte
}

// ParseKeyPair parses a user-supplied or stored CA from a PEM certificate and a
// PEM private key (PKCS#1 RSA, SEC1 EC, or PKCS#8). The first CERTIFICATE block
// of certPEM is used. It fails if the certificate is not a CA, if the key does
// not match the certificate, or if the certificate is not valid at now.
func ParseKeyPair(certPEM, keyPEM []byte, now time.Time) (*KeyPair, error) {
	kp, err := parseKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if err := checkValidity(kp.Cert, now); err != nil {
		return nil, err
	}
	return kp, nil
}

// parseKeyPair is ParseKeyPair without the validity period check.
func parseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	cert, err := decodeCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	if err := checkCA(cert); err != nil {
		return nil, err
	}
	key, keyBlock, err := decodePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !keyMatches(key, cert) {
		return nil, errors.New("private key does not match certificate")
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: encodeCertificate(cert.Raw),
		KeyPEM:  encodeBlock(keyBlock.Type, keyBlock.Bytes),
	}, nil
}

// newKeyPair wraps a freshly signed certificate and its generated key.
func newKeyPair(der []byte, key *ecdsa.PrivateKey) (*KeyPair, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	keyPEM, err := encodeECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: encodeCertificate(der),
		KeyPEM:  keyPEM,
	}, nil
}

// checkCA reports whether cert may sign certificates.
func checkCA(cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid {
		return errors.New("certificate is not a CA (no basicConstraints extension)")
	}
	if !cert.IsCA {
		return errors.New("certificate is not a CA (basicConstraints CA=false)")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate may not sign certificates (keyUsage lacks keyCertSign)")
	}
	return nil
}

// checkValidity reports whether now lies within cert's validity period.
func checkValidity(cert *x509.Certificate, now time.Time) error {
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate expired at %s", formatTime(cert.NotAfter))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate is not valid before %s", formatTime(cert.NotBefore))
	}
	return nil
}

// keyMatches reports whether key is the private half of cert's public key.
func keyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// formatTime renders t for error messages and reasons.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
