package ca

import (
	"bytes"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestPluginCertsRoundTrip(t *testing.T) {
	root := newTestRoot(t, 365*day)
	inter := newTestIntermediate(t, root, "east", 30*day, testNow)
	p := NewPluginCerts(root, inter)

	if !bytes.Equal(p.CACert, inter.CertPEM) || !bytes.Equal(p.CAKey, inter.KeyPEM) || !bytes.Equal(p.RootCert, root.CertPEM) {
		t.Fatal("PluginCerts fields do not hold the key pairs")
	}
	if want := append(bytes.Clone(inter.CertPEM), root.CertPEM...); !bytes.Equal(p.CertChain, want) {
		t.Errorf("CertChain = %s, want intermediate then root", p.CertChain)
	}
	data := p.Data()
	wantKeys := []string{"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"}
	if got := slices.Sorted(maps.Keys(data)); !slices.Equal(got, wantKeys) {
		t.Errorf("Data keys = %q, want %q", got, wantKeys)
	}
	gotInter, gotRoot, err := ParsePluginCerts(data, testNow)
	if err != nil {
		t.Fatalf("ParsePluginCerts: %v", err)
	}
	if !gotInter.Cert.Equal(inter.Cert) {
		t.Error("intermediate certificate changed in round trip")
	}
	if !bytes.Equal(gotInter.KeyPEM, inter.KeyPEM) {
		t.Error("intermediate key changed in round trip")
	}
	if !gotRoot.Equal(root.Cert) {
		t.Error("root certificate changed in round trip")
	}
	if ClusterOf(gotInter.Cert) != "east" {
		t.Errorf("ClusterOf = %q after round trip", ClusterOf(gotInter.Cert))
	}
	// Mutating the Secret data must not change the key pairs.
	data[CACertKey][0] = 'X'
	if inter.CertPEM[0] == 'X' {
		t.Error("PluginCerts aliases the key pair's PEM")
	}
}

func TestNewPluginCertsNil(t *testing.T) {
	p := NewPluginCerts(nil, nil)
	if len(p.CACert)+len(p.CAKey)+len(p.RootCert)+len(p.CertChain) != 0 {
		t.Errorf("NewPluginCerts(nil, nil) = %+v, want empty", p)
	}
}

func TestParsePluginCertsErrors(t *testing.T) {
	root := newTestRoot(t, 365*day)
	other := newTestRoot(t, 365*day)
	inter := newTestIntermediate(t, root, "east", 30*day, testNow)
	good := NewPluginCerts(root, inter).Data()
	with := func(edit func(map[string][]byte)) map[string][]byte {
		d := maps.Clone(good)
		edit(d)
		return d
	}
	tests := []struct {
		name    string
		data    map[string][]byte
		now     time.Time
		wantErr string
	}{
		{name: "valid", data: good, now: testNow},
		{name: "nil data", data: nil, now: testNow, wantErr: "missing ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem"},
		{name: "missing key", data: with(func(d map[string][]byte) { delete(d, CAKeyKey) }), now: testNow, wantErr: "missing ca-key.pem"},
		{name: "empty chain", data: with(func(d map[string][]byte) { d[CertChainKey] = nil }), now: testNow, wantErr: "missing cert-chain.pem"},
		{name: "garbage ca-cert", data: with(func(d map[string][]byte) { d[CACertKey] = []byte("x") }), now: testNow, wantErr: "ca-cert.pem, ca-key.pem: no PEM CERTIFICATE block found"},
		{name: "key of another CA", data: with(func(d map[string][]byte) { d[CAKeyKey] = root.KeyPEM }), now: testNow, wantErr: "private key does not match certificate"},
		{name: "garbage root", data: with(func(d map[string][]byte) { d[RootCertKey] = []byte("x") }), now: testNow, wantErr: "root-cert.pem: no PEM CERTIFICATE block found"},
		{name: "chain in wrong order", data: with(func(d map[string][]byte) { d[CertChainKey] = joinPEM(root.CertPEM, inter.CertPEM) }), now: testNow, wantErr: "cert-chain.pem does not start with ca-cert.pem"},
		{name: "chain without root", data: with(func(d map[string][]byte) { d[CertChainKey] = inter.CertPEM }), now: testNow, wantErr: "cert-chain.pem does not end with root-cert.pem"},
		{
			name: "root-cert of another root",
			data: with(func(d map[string][]byte) {
				d[RootCertKey] = other.CertPEM
				d[CertChainKey] = joinPEM(inter.CertPEM, other.CertPEM)
			}),
			now: testNow, wantErr: "ca-cert.pem does not chain to root-cert.pem",
		},
		{name: "intermediate expired", data: good, now: inter.Cert.NotAfter.Add(time.Second), wantErr: "ca-cert.pem: certificate expired at"},
		{name: "not yet valid", data: good, now: testNow.Add(-time.Hour), wantErr: "ca-cert.pem: certificate is not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, rootCert, err := ParsePluginCerts(tt.data, tt.now)
			checkErr(t, err, tt.wantErr)
			if err != nil && (kp != nil || rootCert != nil) {
				t.Error("got results with error")
			}
		})
	}
}
