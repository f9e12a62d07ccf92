package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"maps"
	"math/big"
	"testing"
	"time"
)

func TestReissueReason(t *testing.T) {
	root := newTestRoot(t, 365*day)
	other := newTestRoot(t, 365*day)
	inter := newTestIntermediate(t, root, "east", 30*day, testNow)
	good := NewPluginCerts(root, inter).Data()
	with := func(edit func(map[string][]byte)) map[string][]byte {
		d := maps.Clone(good)
		edit(d)
		return d
	}
	const renewBefore = 7 * day
	renewAt := inter.Cert.NotAfter.Add(-renewBefore)
	expiresAt := "expires at " + formatTime(inter.Cert.NotAfter)

	// An intermediate of the current root stored with the current root, but
	// for another cluster.
	west := NewPluginCerts(root, newTestIntermediate(t, root, "west", 30*day, testNow)).Data()
	// An intermediate of the old root next to the new root-cert.pem.
	oldInter := newTestIntermediate(t, other, "east", 30*day, testNow)
	staleChain := NewPluginCerts(root, oldInter).Data()
	// A cacerts made for another root altogether, for another cluster too.
	otherRootWest := NewPluginCerts(other, newTestIntermediate(t, other, "west", 30*day, testNow)).Data()
	// A CA signed by the current root, but not by IssueIntermediate.
	foreignData := NewPluginCerts(root, issueForeign(t, root)).Data()

	tests := []struct {
		name        string
		data        map[string][]byte
		root        *KeyPair
		cluster     string
		renewBefore time.Duration
		now         time.Time
		want        string
	}{
		{name: "fine", data: good, root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: ""},
		{name: "nil data", data: nil, root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "missing"},
		{name: "empty data", data: map[string][]byte{}, root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "missing"},
		{name: "some keys missing", data: with(func(d map[string][]byte) { delete(d, CAKeyKey); d[CertChainKey] = nil }), root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "missing ca-key.pem, cert-chain.pem"},
		{name: "unparsable ca-cert", data: with(func(d map[string][]byte) { d[CACertKey] = []byte("junk") }), root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "invalid: ca-cert.pem, ca-key.pem: no PEM CERTIFICATE block found"},
		{name: "key does not match", data: with(func(d map[string][]byte) { d[CAKeyKey] = root.KeyPEM }), root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "invalid: ca-cert.pem, ca-key.pem: private key does not match certificate"},
		{name: "inconsistent chain", data: with(func(d map[string][]byte) { d[CertChainKey] = inter.CertPEM }), root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "invalid: cert-chain.pem does not end with root-cert.pem"},
		{name: "no root given", data: good, root: nil, cluster: "east", renewBefore: renewBefore, now: testNow, want: "invalid: no root CA given to compare against"},
		{name: "root-cert.pem is another root", data: good, root: other, cluster: "east", renewBefore: renewBefore, now: testNow, want: "root changed"},
		{name: "intermediate of old root", data: staleChain, root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "root changed"},
		{name: "root change wins over cluster", data: otherRootWest, root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: "root changed"},
		{name: "issued for another cluster", data: west, root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: `issued for cluster "west"`},
		{name: "cluster wins over expiry", data: west, root: root, cluster: "east", renewBefore: renewBefore, now: renewAt, want: `issued for cluster "west"`},
		{name: "not issued by meshfleet", data: foreignData, root: root, cluster: "east", renewBefore: renewBefore, now: testNow, want: `issued for cluster ""`},
		{name: "just before renewal", data: good, root: root, cluster: "east", renewBefore: renewBefore, now: renewAt.Add(-time.Second), want: ""},
		{name: "at renewal time", data: good, root: root, cluster: "east", renewBefore: renewBefore, now: renewAt, want: expiresAt},
		{name: "inside renewal window", data: good, root: root, cluster: "east", renewBefore: renewBefore, now: renewAt.Add(day), want: expiresAt},
		{name: "at expiry", data: good, root: root, cluster: "east", renewBefore: renewBefore, now: inter.Cert.NotAfter, want: expiresAt},
		{name: "expired", data: good, root: root, cluster: "east", renewBefore: renewBefore, now: inter.Cert.NotAfter.Add(time.Second), want: "expired at " + formatTime(inter.Cert.NotAfter)},
		{name: "not yet valid", data: good, root: root, cluster: "east", renewBefore: renewBefore, now: testNow.Add(-time.Hour), want: "not valid before " + formatTime(inter.Cert.NotBefore)},
		{name: "default window, before", data: good, root: root, cluster: "east", now: RenewalTime(inter.Cert, 0).Add(-time.Second), want: ""},
		{name: "default window, at", data: good, root: root, cluster: "east", now: RenewalTime(inter.Cert, 0), want: expiresAt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReissueReason(tt.data, tt.root, tt.cluster, tt.renewBefore, tt.now); got != tt.want {
				t.Errorf("ReissueReason = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReissueReasonFreshIsStable checks that a freshly issued cacerts is not
// immediately due again, even when the intermediate is capped by a root close
// to its expiry.
func TestReissueReasonFreshIsStable(t *testing.T) {
	root := newTestRoot(t, 10*day)
	now := root.Cert.NotAfter.Add(-2 * day)
	inter := newTestIntermediate(t, root, "east", 365*day, now)
	data := NewPluginCerts(root, inter).Data()
	if got := ReissueReason(data, root, "east", 30*day, now); got != "" {
		t.Errorf("fresh capped intermediate: ReissueReason = %q, want \"\"", got)
	}
}

func TestRenewalTime(t *testing.T) {
	root := newTestRoot(t, 365*day)
	inter := newTestIntermediate(t, root, "east", 30*day, testNow)
	notAfter := inter.Cert.NotAfter
	lifetime := notAfter.Sub(inter.Cert.NotBefore)
	tests := []struct {
		name        string
		renewBefore time.Duration
		want        time.Time
	}{
		{name: "explicit", renewBefore: 7 * day, want: notAfter.Add(-7 * day)},
		{name: "zero means one third", renewBefore: 0, want: notAfter.Add(-lifetime / 3)},
		{name: "negative means one third", renewBefore: -day, want: notAfter.Add(-lifetime / 3)},
		{name: "longer than lifetime means one third", renewBefore: 60 * day, want: notAfter.Add(-lifetime / 3)},
		{name: "equal to lifetime means one third", renewBefore: lifetime, want: notAfter.Add(-lifetime / 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RenewalTime(inter.Cert, tt.renewBefore); !got.Equal(tt.want) {
				t.Errorf("RenewalTime = %s, want %s", got, tt.want)
			}
		})
	}
	if got := RenewalTime(nil, day); !got.IsZero() {
		t.Errorf("RenewalTime(nil) = %s, want zero", got)
	}
}

// issueForeign signs a CA below root whose subject IssueIntermediate would
// never produce.
func issueForeign(t *testing.T, root *KeyPair) *KeyPair {
	t.Helper()
	key := newECKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(99),
		Subject:               pkix.Name{CommonName: "hand-made CA", OrganizationalUnit: []string{"east"}},
		NotBefore:             testNow.Add(-time.Minute),
		NotAfter:              testNow.Add(30 * day),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, key.Public(), root.Key)
	if err != nil {
		t.Fatalf("sign foreign CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse foreign CA: %v", err)
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: sec1PEM(t, key)}
}
