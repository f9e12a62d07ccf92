package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestNewRoot(t *testing.T) {
	tests := []struct {
		name     string
		opts     RootOptions
		wantOrg  string
		wantCN   string
		wantErr  string
		notAfter time.Time
	}{
		{
			name:     "defaults",
			opts:     RootOptions{TTL: 10 * 365 * day, Now: testNow},
			wantOrg:  "meshfleet",
			wantCN:   "meshfleet root CA",
			notAfter: testNow.Add(10 * 365 * day),
		},
		{
			name:     "custom subject",
			opts:     RootOptions{Organization: "acme", CommonName: "acme mesh root", TTL: day, Now: testNow},
			wantOrg:  "acme",
			wantCN:   "acme mesh root",
			notAfter: testNow.Add(day),
		},
		{name: "zero ttl", opts: RootOptions{Now: testNow}, wantErr: "ttl must be positive"},
		{name: "negative ttl", opts: RootOptions{TTL: -day, Now: testNow}, wantErr: "ttl must be positive"},
		{name: "zero now", opts: RootOptions{TTL: day}, wantErr: "now must be set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := NewRoot(tt.opts)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			c := root.Cert
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
			}
			if c.MaxPathLen != -1 {
				t.Errorf("MaxPathLen = %d, want -1 (unconstrained)", c.MaxPathLen)
			}
			wantUsage := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
			if c.KeyUsage != wantUsage {
				t.Errorf("KeyUsage = %b, want %b", c.KeyUsage, wantUsage)
			}
			if got := c.Subject.Organization; len(got) != 1 || got[0] != tt.wantOrg {
				t.Errorf("Organization = %q, want [%q]", got, tt.wantOrg)
			}
			if c.Subject.CommonName != tt.wantCN {
				t.Errorf("CommonName = %q, want %q", c.Subject.CommonName, tt.wantCN)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if c.Subject.String() != c.Issuer.String() {
				t.Errorf("issuer %q != subject %q", c.Issuer, c.Subject)
			}
			if want := testNow.Add(-time.Minute); !c.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s", c.NotBefore, want)
			}
			if !c.NotAfter.Equal(tt.notAfter) {
				t.Errorf("NotAfter = %s, want %s", c.NotAfter, tt.notAfter)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %s is not a positive 128-bit number", c.SerialNumber)
			}
			if len(c.SubjectKeyId) == 0 {
				t.Error("SubjectKeyId is empty")
			}
			key, ok := root.Key.(*ecdsa.PrivateKey)
			if !ok || key.Curve != elliptic.P256() {
				t.Errorf("key is %T, want ECDSA P-256", root.Key)
			}
			block, _ := pem.Decode(root.KeyPEM)
			if block == nil || block.Type != "EC PRIVATE KEY" {
				t.Errorf("KeyPEM is not an EC PRIVATE KEY block: %q", root.KeyPEM)
			}
			if !parsePEMCert(t, root.CertPEM).Equal(c) {
				t.Error("CertPEM does not hold Cert")
			}
			if err := x509Verify(c, c, nil, testNow); err != nil {
				t.Errorf("root does not verify against itself: %v", err)
			}
			again, err := ParseKeyPair(root.CertPEM, root.KeyPEM, testNow)
			if err != nil {
				t.Fatalf("ParseKeyPair of new root: %v", err)
			}
			if !again.Cert.Equal(c) {
				t.Error("ParseKeyPair returned another certificate")
			}
		})
	}
}

func TestNewRootUniqueSerialsAndKeys(t *testing.T) {
	a := newTestRoot(t, day)
	b := newTestRoot(t, day)
	if a.Cert.SerialNumber.Cmp(b.Cert.SerialNumber) == 0 {
		t.Error("two roots share a serial number")
	}
	if a.Cert.PublicKey.(*ecdsa.PublicKey).Equal(b.Cert.PublicKey) {
		t.Error("two roots share a key")
	}
}
