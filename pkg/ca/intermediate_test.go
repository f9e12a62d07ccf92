package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func TestIssueIntermediate(t *testing.T) {
	root := newTestRoot(t, 10*365*day)
	tests := []struct {
		name         string
		ttl          time.Duration
		now          time.Time
		wantNotAfter time.Time
	}{
		{name: "within root lifetime", ttl: 365 * day, now: testNow, wantNotAfter: testNow.Add(365 * day)},
		{name: "later issuance", ttl: 30 * day, now: testNow.Add(100 * day), wantNotAfter: testNow.Add(130 * day)},
		{name: "capped at root expiry", ttl: 20 * 365 * day, now: testNow, wantNotAfter: root.Cert.NotAfter},
		{name: "capped near root expiry", ttl: 365 * day, now: root.Cert.NotAfter.Add(-day), wantNotAfter: root.Cert.NotAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp := newTestIntermediate(t, root, "east", tt.ttl, tt.now)
			c := kp.Cert
			if err := x509Verify(c, root.Cert, nil, tt.now); err != nil {
				t.Fatalf("intermediate does not chain to root: %v", err)
			}
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
			}
			if c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("MaxPathLen=%d MaxPathLenZero=%v, want 0 and true", c.MaxPathLen, c.MaxPathLenZero)
			}
			wantUsage := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
			if c.KeyUsage != wantUsage {
				t.Errorf("KeyUsage = %b, want %b", c.KeyUsage, wantUsage)
			}
			if !bytes.Equal(c.AuthorityKeyId, root.Cert.SubjectKeyId) {
				t.Errorf("AuthorityKeyId = %x, want root SubjectKeyId %x", c.AuthorityKeyId, root.Cert.SubjectKeyId)
			}
			if len(c.SubjectKeyId) == 0 || bytes.Equal(c.SubjectKeyId, root.Cert.SubjectKeyId) {
				t.Errorf("SubjectKeyId = %x, want its own", c.SubjectKeyId)
			}
			if c.Subject.CommonName != "meshfleet intermediate CA east" {
				t.Errorf("CommonName = %q", c.Subject.CommonName)
			}
			if got := c.Subject.Organization; len(got) != 1 || got[0] != "meshfleet" {
				t.Errorf("Organization = %q, want root's", got)
			}
			if got := ClusterOf(c); got != "east" {
				t.Errorf("ClusterOf = %q, want east", got)
			}
			if want := tt.now.Add(-time.Minute); !c.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s", c.NotBefore, want)
			}
			if !c.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("NotAfter = %s, want %s", c.NotAfter, tt.wantNotAfter)
			}
			if c.NotAfter.After(root.Cert.NotAfter) {
				t.Errorf("NotAfter %s outlives root %s", c.NotAfter, root.Cert.NotAfter)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %s is not a positive 128-bit number", c.SerialNumber)
			}
			if _, err := ParseKeyPair(kp.CertPEM, kp.KeyPEM, tt.now); err != nil {
				t.Errorf("ParseKeyPair of intermediate: %v", err)
			}
		})
	}
}

// TestIntermediatePathLenZero checks the intermediate can sign workload
// certificates but not further CAs.
func TestIntermediatePathLenZero(t *testing.T) {
	root := newTestRoot(t, 365*day)
	inter := newTestIntermediate(t, root, "east", 30*day, testNow)
	// sign issues a certificate below parent and returns it with its key.
	sign := func(parent *x509.Certificate, parentKey crypto.Signer, cn string, isCA bool) (*x509.Certificate, crypto.Signer) {
		key := newECKey(t)
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(7),
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             testNow.Add(-time.Minute),
			NotAfter:              testNow.Add(day),
			IsCA:                  isCA,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatalf("sign %s: %v", cn, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("parse %s: %v", cn, err)
		}
		return c, key
	}
	workload, _ := sign(inter.Cert, inter.Key, "workload", false)
	if err := x509Verify(workload, root.Cert, []*x509.Certificate{inter.Cert}, testNow); err != nil {
		t.Errorf("workload certificate does not verify: %v", err)
	}
	subCA, subKey := sign(inter.Cert, inter.Key, "sub CA", true)
	below, _ := sign(subCA, subKey, "below sub CA", false)
	if err := x509Verify(below, root.Cert, []*x509.Certificate{inter.Cert, subCA}, testNow); err == nil {
		t.Error("certificate below a CA signed by the intermediate verifies; pathlen 0 not enforced")
	}
}

func TestIssueIntermediateFromRSARoot(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := selfSigned(t, key, func(c *x509.Certificate) { c.Subject.Organization = []string{"acme"} })
	root, err := ParseKeyPair(certPEM, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)), testNow)
	if err != nil {
		t.Fatalf("ParseKeyPair: %v", err)
	}
	inter := newTestIntermediate(t, root, "west", 30*day, testNow)
	if err := x509Verify(inter.Cert, root.Cert, nil, testNow); err != nil {
		t.Fatalf("intermediate does not chain to RSA root: %v", err)
	}
	if got := inter.Cert.Subject.Organization; len(got) != 1 || got[0] != "acme" {
		t.Errorf("Organization = %q, want root's [acme]", got)
	}
}

func TestIssueIntermediateErrors(t *testing.T) {
	root := newTestRoot(t, 365*day)
	other := newTestRoot(t, 365*day)
	inter := newTestIntermediate(t, root, "east", 30*day, testNow)
	notCAKey := newECKey(t)
	notCA := parsePEMCert(t, selfSigned(t, notCAKey, func(c *x509.Certificate) { c.IsCA = false }))
	valid := IntermediateOptions{ClusterName: "east", TTL: day, Now: testNow}
	with := func(edit func(*IntermediateOptions)) IntermediateOptions {
		o := valid
		edit(&o)
		return o
	}
	tests := []struct {
		name    string
		root    *KeyPair
		opts    IntermediateOptions
		wantErr string
	}{
		{name: "nil root", root: nil, opts: valid, wantErr: "root CA certificate and key are required"},
		{name: "root without key", root: &KeyPair{Cert: root.Cert}, opts: valid, wantErr: "root CA certificate and key are required"},
		{name: "empty cluster", root: root, opts: with(func(o *IntermediateOptions) { o.ClusterName = "" }), wantErr: "cluster name is required"},
		{name: "blank cluster", root: root, opts: with(func(o *IntermediateOptions) { o.ClusterName = "  " }), wantErr: "cluster name is required"},
		{name: "zero ttl", root: root, opts: with(func(o *IntermediateOptions) { o.TTL = 0 }), wantErr: "ttl must be positive"},
		{name: "zero now", root: root, opts: with(func(o *IntermediateOptions) { o.Now = time.Time{} }), wantErr: "now must be set"},
		{name: "root expired", root: root, opts: with(func(o *IntermediateOptions) { o.Now = root.Cert.NotAfter }), wantErr: "root CA expired at " + formatTime(root.Cert.NotAfter)},
		{name: "root not yet valid", root: root, opts: with(func(o *IntermediateOptions) { o.Now = testNow.Add(-time.Hour) }), wantErr: "root CA is not valid before"},
		{name: "root not a CA", root: &KeyPair{Cert: notCA, Key: notCAKey}, opts: valid, wantErr: "certificate is not a CA (basicConstraints CA=false)"},
		{name: "root with pathlen 0", root: inter, opts: valid, wantErr: "pathLenConstraint 0"},
		{name: "root key mismatch", root: &KeyPair{Cert: root.Cert, Key: other.Key}, opts: valid, wantErr: "private key does not match certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := IssueIntermediate(tt.root, tt.opts)
			checkErr(t, err, tt.wantErr)
			if kp != nil {
				t.Errorf("got key pair %v with error", kp)
			}
		})
	}
}

func TestClusterOf(t *testing.T) {
	root := newTestRoot(t, 365*day)
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{name: "intermediate", cert: newTestIntermediate(t, root, "east", day, testNow).Cert, want: "east"},
		{name: "cluster with spaces and dots", cert: newTestIntermediate(t, root, "prod.eu 1", day, testNow).Cert, want: "prod.eu 1"},
		{name: "root", cert: root.Cert, want: ""},
		{name: "nil", cert: nil, want: ""},
		{name: "OU without matching CN", cert: &x509.Certificate{Subject: pkix.Name{CommonName: "other", OrganizationalUnit: []string{"east"}}}, want: ""},
		{name: "two OUs", cert: &x509.Certificate{Subject: pkix.Name{CommonName: "meshfleet intermediate CA east", OrganizationalUnit: []string{"east", "west"}}}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClusterOf(tt.cert); got != tt.want {
				t.Errorf("ClusterOf = %q, want %q", got, tt.want)
			}
		})
	}
}
