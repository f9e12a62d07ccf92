package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// KeyPair is a certificate with its key: fixed, or read from files and
// re-read whenever they change (a rotated certificate takes effect for the
// next handshake, with no restart). File watching is kube-apiserver's own
// (k8s.io/apiserver dynamiccertificates: inotify, plus a re-read every
// minute).
type KeyPair struct {
	files *dynamiccertificates.DynamicCertKeyPairContent

	mu              sync.Mutex
	certPEM, keyPEM []byte
	cert            *tls.Certificate
}

// StaticKeyPair is a KeyPair that never changes.
func StaticKeyPair(cert tls.Certificate) *KeyPair {
	c := cert
	if c.Leaf == nil && len(c.Certificate) > 0 {
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	return &KeyPair{cert: &c}
}

// KeyPairFromFiles reads a PEM certificate (chain) and key; Run keeps them
// current.
func KeyPairFromFiles(certFile, keyFile string) (*KeyPair, error) {
	d, err := dynamiccertificates.NewDynamicServingContentFromFiles("tunnel", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return &KeyPair{files: d}, nil
}

// Certificate returns the current certificate.
func (k *KeyPair) Certificate() (*tls.Certificate, error) {
	if k == nil {
		return nil, errors.New("no certificate configured")
	}
	if k.files == nil {
		return k.cert, nil
	}
	certPEM, keyPEM := k.files.CurrentCertKeyContent()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && string(certPEM) == string(k.certPEM) && string(keyPEM) == string(k.keyPEM) {
		return k.cert, nil
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", k.files.Name(), err)
	}
	k.certPEM, k.keyPEM, k.cert = certPEM, keyPEM, &c
	return k.cert, nil
}

// notAfter is when the current certificate expires.
func (k *KeyPair) notAfter() (time.Time, bool) {
	c, err := k.Certificate()
	if err != nil || c == nil || c.Leaf == nil {
		return time.Time{}, false
	}
	return c.Leaf.NotAfter, true
}

// Run re-reads the files when they change, until ctx is done. It returns at
// once for a static KeyPair.
func (k *KeyPair) Run(ctx context.Context) {
	if k != nil && k.files != nil {
		k.files.Run(ctx, 1)
	}
}

// CABundle is a set of CA certificates: fixed, or read from a file and
// re-read whenever it changes.
type CABundle struct {
	file *dynamiccertificates.DynamicFileCAContent

	mu    sync.Mutex
	pem   []byte
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// StaticCABundle is a CABundle of the given certificates.
func StaticCABundle(certs ...*x509.Certificate) *CABundle {
	b := &CABundle{pool: x509.NewCertPool(), certs: certs}
	for _, c := range certs {
		b.pool.AddCert(c)
	}
	return b
}

// CABundleFromPEM is a fixed CABundle of PEM certificates.
func CABundleFromPEM(b []byte) (*CABundle, error) {
	certs, err := parseCertificates(b)
	if err != nil {
		return nil, err
	}
	return StaticCABundle(certs...), nil
}

// CABundleFromFile reads a PEM bundle; Run keeps it current.
func CABundleFromFile(file string) (*CABundle, error) {
	d, err := dynamiccertificates.NewDynamicCAContentFromFile("tunnel", file)
	if err != nil {
		return nil, fmt.Errorf("load CA bundle %s: %w", file, err)
	}
	return &CABundle{file: d}, nil
}

// current returns the bundle's pool and certificates.
func (b *CABundle) current() (*x509.CertPool, []*x509.Certificate) {
	if b == nil {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file == nil {
		return b.pool, b.certs
	}
	content := b.file.CurrentCABundleContent()
	if b.pool != nil && string(content) == string(b.pem) {
		return b.pool, b.certs
	}
	certs, err := parseCertificates(content)
	if err != nil {
		// dynamiccertificates keeps the last bundle that parsed.
		return b.pool, b.certs
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	b.pem, b.pool, b.certs = content, pool, certs
	return pool, certs
}

// Pool returns the current certificates as a pool.
func (b *CABundle) Pool() *x509.CertPool {
	p, _ := b.current()
	return p
}

// notAfter is when the first certificate of the bundle expires.
func (b *CABundle) notAfter() (time.Time, bool) {
	_, certs := b.current()
	var first time.Time
	for _, c := range certs {
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first, !first.IsZero()
}

// Run re-reads the file when it changes, until ctx is done. It returns at
// once for a static bundle.
func (b *CABundle) Run(ctx context.Context) {
	if b != nil && b.file != nil {
		b.file.Run(ctx, 1)
	}
}

func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse CA certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate in the CA bundle")
	}
	return out, nil
}
