package meshca

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

func TestAgentCertificate(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tunnelCA, err := ca.NewRoot(ca.RootOptions{TTL: 365 * 24 * time.Hour, Now: now.Add(-time.Hour), CommonName: "tunnel CA"})
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := ca.NewRoot(ca.RootOptions{TTL: 365 * 24 * time.Hour, Now: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(issuer *ca.KeyPair, cluster string, ttl time.Duration, at time.Time) map[string][]byte {
		c, err := tunnel.IssueAgentCertificate(issuer, cluster, tunnel.CertificateOptions{TTL: ttl, Now: at})
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{corev1.TLSCertKey: c.CertPEM, corev1.TLSPrivateKeyKey: c.KeyPEM, TunnelCAKey: tunnelCA.CertPEM}
	}
	fresh := issue(tunnelCA, "east", AgentCertTTL, now.Add(-time.Hour))
	fromOther := issue(otherCA, "east", AgentCertTTL, now)
	tests := []struct {
		name       string
		live       map[string][]byte
		wantReason string // "" keeps live
	}{
		{name: "fresh certificate kept", live: fresh},
		{name: "none yet", live: nil, wantReason: "missing"},
		{name: "another cluster's", live: issue(tunnelCA, "west", AgentCertTTL, now), wantReason: "not issued for cluster east"},
		{name: "signed by another CA (a cluster's intermediate, the mesh root)", live: fromOther, wantReason: "not a valid client certificate of the tunnel CA"},
		{name: "two thirds of its life gone", live: issue(tunnelCA, "east", AgentCertTTL, now.Add(-5*24*time.Hour)), wantReason: "expires at"},
		{name: "expired", live: issue(tunnelCA, "east", time.Hour, now.Add(-2*time.Hour)), wantReason: "not a valid client certificate"},
		{name: "tunnel CA changed", live: map[string][]byte{corev1.TLSCertKey: fresh[corev1.TLSCertKey], corev1.TLSPrivateKeyKey: fresh[corev1.TLSPrivateKeyKey], TunnelCAKey: otherCA.CertPEM}, wantReason: "tunnel CA changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AgentCertificate(tt.live, tunnelCA, "east", AgentCertTTL, now)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantReason == "" {
				if got.Reissued != "" || string(got.Data[corev1.TLSCertKey]) != string(tt.live[corev1.TLSCertKey]) {
					t.Fatalf("live certificate not kept: reissued %q", got.Reissued)
				}
				return
			}
			if !strings.Contains(got.Reissued, tt.wantReason) {
				t.Fatalf("Reissued = %q, want it to contain %q", got.Reissued, tt.wantReason)
			}
			again, err := AgentCertificate(got.Data, tunnelCA, "east", AgentCertTTL, now)
			if err != nil || again.Reissued != "" {
				t.Fatalf("the new certificate is not kept on the next pass: %v %q", err, again.Reissued)
			}
			if want := now.Add(AgentCertTTL); !got.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %s, want %s", got.NotAfter, want)
			}
			if want := now.Add(AgentCertTTL - (AgentCertTTL+time.Minute)/3); !got.RenewAt.Equal(want) {
				t.Errorf("RenewAt = %s, want %s (a third of the lifetime before expiry)", got.RenewAt, want)
			}
		})
	}
}

func TestServerCertificate(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tunnelCA, err := ca.NewRoot(ca.RootOptions{TTL: 365 * 24 * time.Hour, Now: now.Add(-time.Hour), CommonName: "tunnel CA"})
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"tunnel.example.com", "127.0.0.1"}
	issue := func(h []string, ttl time.Duration, at time.Time) map[string][]byte {
		c, err := tunnel.IssueServerCertificate(tunnelCA, h, tunnel.CertificateOptions{TTL: ttl, Now: at})
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{corev1.TLSCertKey: c.CertPEM, corev1.TLSPrivateKeyKey: c.KeyPEM, TunnelCAKey: tunnelCA.CertPEM, "client-ca.crt": []byte("installer's")}
	}
	tests := []struct {
		name       string
		live       map[string][]byte
		wantReason string
	}{
		{name: "fresh certificate kept", live: issue(hosts, ServerCertTTL, now.Add(-time.Hour))},
		{name: "none yet", wantReason: "missing"},
		{name: "a host added", live: issue(hosts[:1], ServerCertTTL, now), wantReason: "for 127.0.0.1"},
		{name: "two thirds of its life gone", live: issue(hosts, ServerCertTTL, now.Add(-21*24*time.Hour)), wantReason: "expires at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ServerCertificate(tt.live, tunnelCA, hosts, ServerCertTTL, now)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got.Reissued, tt.wantReason) || (tt.wantReason == "") != (got.Reissued == "") {
				t.Fatalf("Reissued = %q, want %q", got.Reissued, tt.wantReason)
			}
			if again, err := ServerCertificate(got.Data, tunnelCA, hosts, ServerCertTTL, now); err != nil || again.Reissued != "" {
				t.Fatalf("not kept on the next pass: %v %q", err, again.Reissued)
			}
		})
	}
}
