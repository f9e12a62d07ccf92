package ca

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestParseKeyPair(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	xKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := newECKey(t)
	otherKey := newECKey(t)

	rsaCert := selfSigned(t, rsaKey, nil)
	ecCert := selfSigned(t, ecKey, nil)
	edCert := selfSigned(t, edKey, nil)
	expiresAt := testNow.Add(-time.Hour)
	expired := selfSigned(t, ecKey, func(c *x509.Certificate) {
		c.NotBefore = testNow.Add(-48 * time.Hour)
		c.NotAfter = expiresAt
	})
	future := selfSigned(t, ecKey, func(c *x509.Certificate) { c.NotBefore = testNow.Add(time.Hour) })
	notCA := selfSigned(t, ecKey, func(c *x509.Certificate) { c.IsCA = false })
	noBasic := selfSigned(t, ecKey, func(c *x509.Certificate) {
		c.IsCA = false
		c.BasicConstraintsValid = false
	})
	noCertSign := selfSigned(t, ecKey, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	ecSEC1 := sec1PEM(t, ecKey)
	ecParams := append(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), ecSEC1...)
	other := selfSigned(t, otherKey, nil)

	tests := []struct {
		name         string
		cert, key    []byte
		wantErr      string
		wantKeyBlock string
	}{
		{name: "RSA PKCS#1", cert: rsaCert, key: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), wantKeyBlock: "RSA PRIVATE KEY"},
		{name: "RSA PKCS#8", cert: rsaCert, key: pkcs8PEM(t, rsaKey), wantKeyBlock: "PRIVATE KEY"},
		{name: "EC SEC1", cert: ecCert, key: ecSEC1, wantKeyBlock: "EC PRIVATE KEY"},
		{name: "EC SEC1 after EC PARAMETERS", cert: ecCert, key: ecParams, wantKeyBlock: "EC PRIVATE KEY"},
		{name: "EC PKCS#8", cert: ecCert, key: pkcs8PEM(t, ecKey), wantKeyBlock: "PRIVATE KEY"},
		{name: "Ed25519 PKCS#8", cert: edCert, key: pkcs8PEM(t, edKey), wantKeyBlock: "PRIVATE KEY"},
		{name: "bundle uses first certificate", cert: append(bytes.Clone(ecCert), other...), key: ecSEC1, wantKeyBlock: "EC PRIVATE KEY"},
		{name: "text around PEM", cert: append([]byte("subject=CN = test CA\n"), ecCert...), key: ecSEC1, wantKeyBlock: "EC PRIVATE KEY"},
		{name: "mismatched key", cert: ecCert, key: sec1PEM(t, otherKey), wantErr: "private key does not match certificate"},
		{name: "mismatched key type", cert: rsaCert, key: ecSEC1, wantErr: "private key does not match certificate"},
		{name: "non-CA certificate", cert: notCA, key: ecSEC1, wantErr: "certificate is not a CA (basicConstraints CA=false)"},
		{name: "no basic constraints", cert: noBasic, key: ecSEC1, wantErr: "certificate is not a CA (no basicConstraints extension)"},
		{name: "no certSign key usage", cert: noCertSign, key: ecSEC1, wantErr: "keyUsage lacks keyCertSign"},
		{name: "expired certificate", cert: expired, key: ecSEC1, wantErr: "certificate expired at " + expiresAt.Format(time.RFC3339)},
		{name: "not yet valid certificate", cert: future, key: ecSEC1, wantErr: "certificate is not valid before"},
		{name: "garbage certificate", cert: []byte("not a certificate"), key: ecSEC1, wantErr: "no PEM CERTIFICATE block found"},
		{name: "empty certificate", cert: nil, key: ecSEC1, wantErr: "no PEM CERTIFICATE block found"},
		{name: "key given as certificate", cert: ecSEC1, key: ecSEC1, wantErr: "no PEM CERTIFICATE block found"},
		{name: "corrupt certificate block", cert: pemBlock("CERTIFICATE", []byte("garbage")), key: ecSEC1, wantErr: "parse certificate 1"},
		{name: "garbage key", cert: ecCert, key: []byte("not a key"), wantErr: "no PEM private key block found"},
		{name: "certificate given as key", cert: ecCert, key: ecCert, wantErr: "no PEM private key block found"},
		{name: "corrupt SEC1 key", cert: ecCert, key: pemBlock("EC PRIVATE KEY", []byte("garbage")), wantErr: "parse SEC1 EC private key"},
		{name: "corrupt PKCS#1 key", cert: ecCert, key: pemBlock("RSA PRIVATE KEY", []byte("garbage")), wantErr: "parse PKCS#1 RSA private key"},
		{name: "corrupt PKCS#8 key", cert: ecCert, key: pemBlock("PRIVATE KEY", []byte("garbage")), wantErr: "parse PKCS#8 private key"},
		{name: "encrypted PKCS#8 key", cert: ecCert, key: pemBlock("ENCRYPTED PRIVATE KEY", []byte("x")), wantErr: "private key is encrypted"},
		{
			name: "legacy encrypted key", cert: ecCert,
			key:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("x")}),
			wantErr: "private key is encrypted",
		},
		{name: "key that cannot sign", cert: ecCert, key: pkcs8PEM(t, xKey), wantErr: "cannot sign certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ParseKeyPair(tt.cert, tt.key, testNow)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				if kp != nil {
					t.Errorf("got key pair with error")
				}
				return
			}
			if !parsePEMCert(t, kp.CertPEM).Equal(kp.Cert) {
				t.Error("CertPEM does not hold Cert")
			}
			if !parsePEMCert(t, tt.cert).Equal(kp.Cert) {
				t.Error("Cert is not the first certificate given")
			}
			if bytes.Count(kp.CertPEM, []byte("-----BEGIN")) != 1 {
				t.Errorf("CertPEM holds more than one block: %s", kp.CertPEM)
			}
			block, rest := pem.Decode(kp.KeyPEM)
			if block == nil || block.Type != tt.wantKeyBlock || len(rest) != 0 {
				t.Fatalf("KeyPEM = %q, want a single %s block", kp.KeyPEM, tt.wantKeyBlock)
			}
			again, err := ParseKeyPair(kp.CertPEM, kp.KeyPEM, testNow)
			if err != nil {
				t.Fatalf("re-parse of encoded key pair: %v", err)
			}
			if !again.Cert.Equal(kp.Cert) {
				t.Error("re-parse returned another certificate")
			}
		})
	}
}
