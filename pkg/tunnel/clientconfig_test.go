package tunnel

import (
	"testing"

	"k8s.io/client-go/rest"
)

func TestClientConfigKeepsOnlyServerCredentials(t *testing.T) {
	primary := &rest.Config{Host: "https://primary:6443", BearerTokenFile: "/var/run/token",
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte("primary-ca"), ServerName: "primary"}}
	cfg := ClientConfig(primary, "https://t:8443/", []byte("tunnel-ca"), "", "east")
	if cfg.Host != "https://t:8443/clusters/east" || cfg.BearerTokenFile != "/var/run/token" || string(cfg.CAData) != "tunnel-ca" || cfg.ServerName != "" {
		t.Errorf("tunnel config: host %s token file %s CA %q server name %q", cfg.Host, cfg.BearerTokenFile, cfg.CAData, cfg.ServerName)
	}
}

func TestClientConfigPresentsTheTunnelToken(t *testing.T) {
	primary := &rest.Config{Host: "https://primary:6443", BearerToken: "api-audience",
		TLSClientConfig: rest.TLSClientConfig{CertData: []byte("c"), KeyData: []byte("k")}}
	cfg := ClientConfig(primary, "https://t:8443", nil, "/var/run/secrets/meshfleet.io/tunnel/token", "east")
	if cfg.BearerTokenFile != "/var/run/secrets/meshfleet.io/tunnel/token" || cfg.BearerToken != "" || cfg.CertData != nil || cfg.KeyData != nil {
		t.Errorf("tunnel config presents token %q, file %q, cert %q; want only the tunnel token file", cfg.BearerToken, cfg.BearerTokenFile, cfg.CertData)
	}
}
