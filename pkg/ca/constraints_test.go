package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"
)

// TestIntermediateConstraints is the attack row "a remote's intermediate
// (whose key its admin holds) signs a CA, a foreign trust domain or an
// arbitrary DNS name": crypto/x509 must reject each, and still accept the
// workload and istiod certificates Istio issues.
func TestIntermediateConstraints(t *testing.T) {
	root := newTestRoot(t, 365*day)
	remote, err := IssueIntermediate(root, IntermediateOptions{ClusterName: "remote1", TTL: 30 * day, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	primary, err := IssueIntermediate(root, IntermediateOptions{ClusterName: "primary", TTL: 30 * day, Now: testNow,
		Constraints: Constraints{DNSNames: []string{"istiod.istio-system.svc"}}})
	if err != nil {
		t.Fatal(err)
	}
	uri := func(s string) []*url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return []*url.URL{u}
	}
	tests := []struct {
		name   string
		issuer *KeyPair
		leaf   x509.Certificate
		eku    x509.ExtKeyUsage
		// subCA signs the leaf from a CA that the issuer signed.
		subCA bool
		ok    bool
	}{
		{name: "workload of the trust domain", issuer: remote, ok: true, eku: x509.ExtKeyUsageClientAuth,
			leaf: x509.Certificate{URIs: uri("spiffe://cluster.local/ns/default/sa/web"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}},
		{name: "istiod serving certificate from the primary's intermediate", issuer: primary, ok: true, eku: x509.ExtKeyUsageServerAuth,
			leaf: x509.Certificate{DNSNames: []string{"istiod.istio-system.svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{name: "foreign trust domain", issuer: remote, eku: x509.ExtKeyUsageClientAuth,
			leaf: x509.Certificate{URIs: uri("spiffe://evil.example/ns/default/sa/web")}},
		{name: "tunnel agent identity", issuer: remote, eku: x509.ExtKeyUsageClientAuth,
			leaf: x509.Certificate{URIs: uri("spiffe://meshfleet.io/tunnel/agent/remote2"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
		{name: "arbitrary DNS name", issuer: remote, eku: x509.ExtKeyUsageServerAuth,
			leaf: x509.Certificate{DNSNames: []string{"tunnel.example.com"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{name: "istiod's name from a remote's intermediate", issuer: remote, eku: x509.ExtKeyUsageServerAuth,
			leaf: x509.Certificate{DNSNames: []string{"istiod.istio-system.svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{name: "other DNS name from the primary's intermediate", issuer: primary, eku: x509.ExtKeyUsageServerAuth,
			leaf: x509.Certificate{DNSNames: []string{"kubernetes.default.svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{name: "IP address", issuer: remote, eku: x509.ExtKeyUsageServerAuth,
			leaf: x509.Certificate{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{name: "code signing", issuer: remote, eku: x509.ExtKeyUsageCodeSigning,
			leaf: x509.Certificate{URIs: uri("spiffe://cluster.local/ns/default/sa/web"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}},
		{name: "certificate below a sub-CA", issuer: remote, eku: x509.ExtKeyUsageServerAuth, subCA: true,
			leaf: x509.Certificate{URIs: uri("spiffe://cluster.local/ns/default/sa/web"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(root.Cert)
			inter.AddCert(tt.issuer.Cert)
			// The holder of the intermediate's key can sign anything; the
			// question is whether a verifier accepts it.
			parent, parentKey := tt.issuer.Cert, tt.issuer.Key
			if tt.subCA {
				key := newECKey(t)
				parent = signTest(t, &x509.Certificate{IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
					Subject: pkix.Name{CommonName: "sub CA"}}, parent, parentKey, key)
				parentKey = key
				inter.AddCert(parent)
			}
			tmpl := tt.leaf
			tmpl.Subject = pkix.Name{CommonName: tt.name}
			leaf := signTest(t, &tmpl, parent, parentKey, newECKey(t))
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{tt.eku}})
			if tt.ok && err != nil {
				t.Fatalf("legitimate certificate rejected: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatal("certificate verified; the intermediate's constraints did not hold")
			}
			if err != nil {
				t.Logf("rejected: %v", err)
			}
		})
	}
}

func TestConstraintsReason(t *testing.T) {
	root := newTestRoot(t, 365*day)
	want := Constraints{DNSNames: []string{"istiod.istio-system.svc"}}
	constrained := newTestIntermediateWith(t, root, want)
	unconstrained := newTestIntermediate(t, root, "east", 30*day, testNow)
	unconstrained.Cert.PermittedURIDomains = nil
	tests := []struct {
		name string
		cert *x509.Certificate
		c    Constraints
		want string
	}{
		{name: "as issued", cert: constrained.Cert, c: want, want: ""},
		{name: "issued before constraints", cert: unconstrained.Cert, c: want, want: "not constrained to trust domain cluster.local"},
		{name: "other trust domain", cert: constrained.Cert, c: Constraints{TrustDomain: "prod.example", DNSNames: want.DNSNames}, want: "not constrained to trust domain prod.example"},
		{name: "DNS names changed", cert: constrained.Cert, c: Constraints{}, want: "may sign DNS names"},
		{name: "nil", cert: nil, c: want, want: "no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConstraintsReason(tt.cert, tt.c); got != tt.want {
				t.Errorf("ConstraintsReason = %q, want %q", got, tt.want)
			}
		})
	}
}

// signTest signs tmpl (valid for a day from testNow) with parent.
func signTest(t *testing.T, tmpl, parent *x509.Certificate, parentKey crypto.Signer, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(9)
	tmpl.NotBefore, tmpl.NotAfter = testNow.Add(-time.Minute), testNow.Add(day)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newTestIntermediateWith(t *testing.T, root *KeyPair, c Constraints) *KeyPair {
	t.Helper()
	kp, err := IssueIntermediate(root, IntermediateOptions{ClusterName: "east", TTL: 30 * day, Now: testNow, Constraints: c})
	if err != nil {
		t.Fatalf("IssueIntermediate: %v", err)
	}
	return kp
}
