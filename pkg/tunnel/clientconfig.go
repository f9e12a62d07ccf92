package tunnel

import (
	"strings"

	"k8s.io/client-go/rest"
)

// ClientConfig is how a component of the primary reaches cluster's API
// server through the tunnel server at serverURL (cluster is served at
// serverURL/clusters/<cluster>), the server's certificate verified with
// caData. The caller presents its own credentials for the primary, which
// the server authenticates; when tokenFile is set it presents the token
// there (one for the tunnel's audience) instead.
func ClientConfig(primary *rest.Config, serverURL string, caData []byte, tokenFile, cluster string) *rest.Config {
	cfg := rest.AnonymousClientConfig(primary)
	cfg.BearerToken, cfg.BearerTokenFile = primary.BearerToken, primary.BearerTokenFile
	cfg.CertData, cfg.KeyData = primary.CertData, primary.KeyData
	cfg.CertFile, cfg.KeyFile = primary.CertFile, primary.KeyFile
	if tokenFile != "" {
		cfg.BearerToken, cfg.BearerTokenFile = "", tokenFile
		cfg.CertData, cfg.KeyData, cfg.CertFile, cfg.KeyFile = nil, nil, "", ""
	}
	cfg.Host = strings.TrimSuffix(serverURL, "/") + "/clusters/" + cluster
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = caData, ""
	cfg.TLSClientConfig.ServerName = ""
	return cfg
}
