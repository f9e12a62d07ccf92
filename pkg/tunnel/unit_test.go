package tunnel

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerifyAgentChains(t *testing.T) {
	p := newTestPKI(t, "c1", "c2")
	verify := func(cluster, issuer string) [][]*x509.Certificate {
		cert := p.agentCert(t, cluster, issuer)
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		inter := x509.NewCertPool()
		inter.AddCert(p.inter[issuer].Cert)
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: p.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			t.Fatal(err)
		}
		return chains
	}
	tests := []struct {
		name            string
		cert, issuer    string
		claim           string
		wantErrContains string
	}{
		{"own cluster", "c1", "c1", "c1", ""},
		{"claims another cluster", "c2", "c2", "c1", `its certificate is for cluster "c2"`},
		{"signed by another cluster's intermediate", "c1", "c2", "c1", `intermediate CA of cluster "c2"`},
		{"bad claimed name", "c1", "c1", "C1!", "not a DNS label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyAgentChains(verify(tt.cert, tt.issuer), tt.claim)
			if tt.wantErrContains == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErrContains) {
				t.Fatalf("error %v, want it to contain %q", err, tt.wantErrContains)
			}
		})
	}
}

func TestIssueAgentCertificateRefusesForeignIntermediate(t *testing.T) {
	p := newTestPKI(t, "c1", "c2")
	_, err := IssueAgentCertificate(p.inter["c2"], "c1", CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err == nil || !strings.Contains(err.Error(), `intermediate CA of cluster "c2"`) {
		t.Fatalf("error %v", err)
	}
}

func TestSplitClusterPath(t *testing.T) {
	tests := []struct {
		in, cluster, rest string
		ok                bool
	}{
		{"/clusters/c1/api/v1/pods", "c1", "/api/v1/pods", true},
		{"/clusters/c1", "c1", "/", true},
		{"/clusters/c1/", "c1", "/", true},
		{"/clusters//api", "", "", false},
		{"/clusters/UPPER/api", "", "", false},
		{"/api/v1", "", "", false},
	}
	for _, tt := range tests {
		c, r, ok := splitClusterPath(tt.in)
		if c != tt.cluster || r != tt.rest || ok != tt.ok {
			t.Errorf("splitClusterPath(%q) = %q, %q, %v; want %q, %q, %v", tt.in, c, r, ok, tt.cluster, tt.rest, tt.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		b := newBackoff(100*time.Millisecond, time.Second)
		b.rand = func() float64 { return r }
		var got []time.Duration
		for range 6 {
			got = append(got, b.next())
		}
		caps := []time.Duration{100, 200, 400, 800, 1000, 1000}
		for i, d := range got {
			c := caps[i] * time.Millisecond
			if d < c/2 || d > c {
				t.Errorf("rand %v: delay %d = %v, want within [%v, %v]", r, i, d, c/2, c)
			}
		}
		b.reset()
		if d := b.next(); d > 100*time.Millisecond {
			t.Errorf("after reset: %v", d)
		}
	}
}

func TestTokenCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTokenCache(2, 10*time.Second, time.Second)
	c.now = func() time.Time { return now }
	alice := &Identity{User: "alice"}
	c.put("a", alice, nil)
	c.put("bad", nil, errUnauthenticated)
	if id, err, ok := c.get("a"); !ok || err != nil || id != alice {
		t.Fatalf("get a = %v, %v, %v", id, err, ok)
	}
	now = now.Add(2 * time.Second)
	if _, _, ok := c.get("bad"); ok {
		t.Error("a denial outlived its TTL")
	}
	c.put("b", &Identity{User: "bob"}, nil)
	c.put("c", &Identity{User: "carol"}, nil)
	if len(c.entries) > 2 {
		t.Errorf("cache holds %d entries, max 2", len(c.entries))
	}
	if _, err, ok := c.get("c"); !ok || errors.Is(err, errUnauthenticated) {
		t.Error("newest entry missing")
	}
}
