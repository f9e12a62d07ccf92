package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"
)

func TestParseRoots(t *testing.T) {
	a, b := newTestRoot(t, day), newTestRoot(t, day)
	inter := newTestIntermediate(t, a, "east", day/2, testNow)
	roots, err := ParseRoots(joinPEM(a.CertPEM, b.CertPEM))
	if err != nil || len(roots) != 2 {
		t.Fatalf("two roots: %v, %d", err, len(roots))
	}
	checkErr(t, func() error { _, err := ParseRoots(joinPEM(a.CertPEM, a.KeyPEM)); return err }(), "holds a private key")
	checkErr(t, func() error { _, err := ParseRoots([]byte("root")); return err }(), "no PEM CERTIFICATE block")
	leaf := signTest(t, &x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}}, inter.Cert, inter.Key, newECKey(t))
	checkErr(t, func() error { _, err := ParseRoots(pemBlock("CERTIFICATE", leaf.Raw)); return err }(), "not a CA")
}

// TestCheckExternalCACerts: a user's cacerts is checked against the
// configured root; what would break istiod is an error naming the key,
// what only weakens the mesh is a warning.
func TestCheckExternalCACerts(t *testing.T) {
	root, other := newTestRoot(t, 365*day), newTestRoot(t, 365*day)
	c := ClusterConstraints("istio-system", false)
	good := newTestIntermediateWith(t, root, c)
	foreign := newTestIntermediateWith(t, other, c)
	unconstrained := issueForeign(t, root) // no name constraints, no EKUs
	// A two-level external PKI: root → issuing CA → cluster intermediate.
	issuingCA := issueForeignPath(t, root)
	below, err := IssueIntermediate(issuingCA, IntermediateOptions{ClusterName: "east", TTL: 30 * day, Now: testNow, Constraints: c})
	if err != nil {
		t.Fatal(err)
	}
	data := func(im *KeyPair, r *KeyPair) map[string][]byte { return NewPluginCerts(r, im).Data() }
	with := func(d map[string][]byte, k string, v []byte) map[string][]byte { d[k] = v; return d }
	cases := []struct {
		name     string
		data     map[string][]byte
		now      time.Time
		keys     string
		problem  string
		warnings []string
	}{
		{name: "as meshctl signs it", data: data(good, root), now: testNow},
		{name: "two-level chain", now: testNow, data: map[string][]byte{CACertKey: below.CertPEM, CAKeyKey: below.KeyPEM, RootCertKey: root.CertPEM,
			CertChainKey: joinPEM(below.CertPEM, issuingCA.CertPEM, root.CertPEM)}},
		{name: "missing", data: map[string][]byte{}, now: testNow, keys: "ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem", problem: "missing"},
		{name: "another root", data: data(foreign, other), now: testNow, keys: "root-cert.pem", problem: "not the configured root"},
		{name: "another root's intermediate with our root-cert.pem", data: with(data(foreign, root), CertChainKey, joinPEM(foreign.CertPEM, root.CertPEM)), now: testNow, keys: "ca-cert.pem, cert-chain.pem", problem: "does not chain to the configured root"},
		{name: "key of another intermediate", data: with(data(good, root), CAKeyKey, foreign.KeyPEM), now: testNow, keys: "ca-cert.pem, ca-key.pem", problem: "does not match"},
		{name: "the root itself", data: map[string][]byte{CACertKey: root.CertPEM, CAKeyKey: root.KeyPEM, RootCertKey: root.CertPEM, CertChainKey: joinPEM(root.CertPEM, root.CertPEM)}, now: testNow, keys: "ca-cert.pem, ca-key.pem", problem: "root key must stay outside"},
		{name: "expired", data: data(good, root), now: good.Cert.NotAfter.Add(time.Second), keys: "ca-cert.pem", problem: "expired at"},
		{name: "chain without root", data: with(data(good, root), CertChainKey, good.CertPEM), now: testNow, keys: "cert-chain.pem", problem: "does not end with"},
		{name: "kubernetes.io/tls format (cert-manager)", now: testNow, data: map[string][]byte{TLSCertKey: good.CertPEM, TLSKeyKey: good.KeyPEM, TLSRootKey: root.CertPEM}},
		{name: "tls format, two-level chain in tls.crt", now: testNow, data: map[string][]byte{TLSCertKey: joinPEM(below.CertPEM, issuingCA.CertPEM), TLSKeyKey: below.KeyPEM, TLSRootKey: root.CertPEM}},
		{name: "tls format, ca.crt not the root", now: testNow, data: map[string][]byte{TLSCertKey: below.CertPEM, TLSKeyKey: below.KeyPEM, TLSRootKey: issuingCA.CertPEM}, keys: "ca.crt", problem: "not the configured root"},
		{name: "tls format without key", now: testNow, data: map[string][]byte{TLSCertKey: good.CertPEM, TLSRootKey: root.CertPEM}, keys: "tls.key", problem: "missing"},
		{name: "tls format, issuing CA missing from tls.crt", now: testNow, data: map[string][]byte{TLSCertKey: below.CertPEM, TLSKeyKey: below.KeyPEM, TLSRootKey: root.CertPEM}, keys: "tls.crt", problem: "does not chain"},
		{name: "about to expire", data: data(good, root), now: good.Cert.NotAfter.Add(-day), warnings: []string{"expires at"}},
		{name: "no constraints", data: data(unconstrained, root), now: testNow, warnings: []string{"lacks the constraints", "not constrained to trust domain"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckExternalCACerts(tt.data, []*x509.Certificate{root.Cert}, c, 0, tt.now)
			if tt.problem != "" {
				p, ok := err.(*CACertsProblem)
				if !ok || strings.Join(p.Keys, ", ") != tt.keys || !strings.Contains(p.Problem, tt.problem) {
					t.Fatalf("error %v, want keys %q and %q", err, tt.keys, tt.problem)
				}
				t.Logf("%v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := strings.Join(got.Warnings, "; ")
			if (len(got.Warnings) == 0) != (len(tt.warnings) == 0) {
				t.Errorf("warnings %q, want %q", w, tt.warnings)
			}
			for _, want := range tt.warnings {
				if !strings.Contains(w, want) {
					t.Errorf("warnings %q do not say %q", w, want)
				}
			}
			if got.Root != root.Cert {
				t.Error("wrong root")
			}
		})
	}
}

// issueForeignPath signs an issuing CA below root that may sign one more CA.
func issueForeignPath(t *testing.T, root *KeyPair) *KeyPair {
	t.Helper()
	key := newECKey(t)
	tmpl, err := caTemplate(pkix.Name{CommonName: "issuing CA"}, key, testNow, testNow.Add(60*day))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.MaxPathLen = 1
	kp, err := sign(tmpl, root.Cert, root.Key, key)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestCheckExternalCACertsRotation: while a root is rotated the configured
// bundle holds both, and an intermediate of either passes, reporting the
// root it chains to.
func TestCheckExternalCACertsRotation(t *testing.T) {
	oldRoot, newRoot := newTestRoot(t, 365*day), newTestRoot(t, 365*day)
	c := ClusterConstraints("istio-system", true)
	bundle, err := ParseRoots(joinPEM(oldRoot.CertPEM, newRoot.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*KeyPair{oldRoot, newRoot} {
		p, err := ClusterPluginCerts(r, "primary", "istio-system", true, 30*day, testNow)
		if err != nil {
			t.Fatal(err)
		}
		got, err := CheckExternalCACerts(p.Data(), bundle, c, 0, testNow)
		if err != nil || !got.Root.Equal(r.Cert) || len(got.Warnings) > 0 {
			t.Errorf("intermediate of %s: %v, %+v", r.Cert.Subject.CommonName, err, got)
		}
	}
}
