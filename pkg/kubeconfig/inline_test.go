package kubeconfig

import (
	"strings"
	"testing"
)

const ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==" // any base64; Inline does not parse it

func kc(cluster, user string) string {
	return `apiVersion: v1
kind: Config
current-context: c
contexts:
- name: c
  context: {cluster: c, user: u}
clusters:
- name: c
  cluster:
` + cluster + `
users:
- name: u
  user:
` + user + "\n"
}

const (
	goodCluster = "    server: https://203.0.113.1:6443\n    certificate-authority-data: " + ca
	tokenUser   = "    token: abc"
)

func TestInlineAccepts(t *testing.T) {
	for _, c := range []struct{ name, in string }{
		{"token", kc(goodCluster, tokenUser)},
		{"client certificate", kc(goodCluster, "    client-certificate-data: "+ca+"\n    client-key-data: "+ca)},
		{"tls-server-name", kc(goodCluster+"\n    tls-server-name: api.example.com", tokenUser)},
		{"no current-context but one context", strings.Replace(kc(goodCluster, tokenUser), "current-context: c\n", "", 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, errs := Inline([]byte(c.in))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if cfg.Host != "https://203.0.113.1:6443" || len(cfg.CAData) == 0 || cfg.ExecProvider != nil || cfg.AuthProvider != nil ||
				cfg.BearerTokenFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.CAFile != "" || cfg.Insecure || cfg.Proxy != nil {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}

func TestInlineRefuses(t *testing.T) {
	cases := []struct {
		name, in, field, fix string
	}{
		{"exec plugin", kc(goodCluster, "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [-c, 'touch /tmp/pwned']"), "users[u].user.exec", "never run"},
		{"auth-provider", kc(goodCluster, "    auth-provider:\n      name: gcp\n      config: {cmd-path: /bin/sh}"), "users[u].user.auth-provider", "token"},
		{"tokenFile", kc(goodCluster, "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token"), "users[u].user.tokenFile", "file paths are not read"},
		{"client-certificate path", kc(goodCluster, "    client-certificate: /etc/kubernetes/pki/admin.crt\n    client-key-data: "+ca), "users[u].user.client-certificate", "file paths"},
		{"client-key path", kc(goodCluster, "    client-certificate-data: "+ca+"\n    client-key: /etc/kubernetes/pki/admin.key"), "users[u].user.client-key", "file paths"},
		{"certificate-authority path", kc("    server: https://203.0.113.1:6443\n    certificate-authority: /etc/ca.crt", tokenUser), "clusters[c].cluster.certificate-authority", "certificate-authority-data"},
		{"insecure-skip-tls-verify", kc("    server: https://203.0.113.1:6443\n    insecure-skip-tls-verify: true", tokenUser), "clusters[c].cluster.insecure-skip-tls-verify", "certificate-authority-data"},
		{"proxy-url", kc(goodCluster+"\n    proxy-url: http://198.51.100.7:3128", tokenUser), "clusters[c].cluster.proxy-url", "tunnel"},
		{"plain http", kc("    server: http://203.0.113.1:8080", tokenUser), "clusters[c].cluster.server", "only https"},
		{"no server", kc("    certificate-authority-data: "+ca, tokenUser), "clusters[c].cluster.server", "https://"},
		{"basic auth", kc(goodCluster, "    username: admin\n    password: secret"), "users[u].user.username", "basic authentication"},
		{"impersonation", kc(goodCluster, tokenUser+"\n    as: system:admin"), "users[u].user.as", "impersonation"},
		{"no credentials", kc(goodCluster, "    {}"), "users[u].user.token", "no credentials"},
		{"token and certificate", kc(goodCluster, tokenUser+"\n    client-certificate-data: "+ca+"\n    client-key-data: "+ca), "users[u].user.token", "not both"},
		{"certificate without key", kc(goodCluster, "    client-certificate-data: "+ca), "users[u].user.client-key-data", "give both"},
		{"exec in an unused user", kc(goodCluster, tokenUser) + "- name: other\n  user:\n    exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}\n", "users[other].user.exec", "never run"},
		{"two contexts, none current", strings.Replace(kc(goodCluster, tokenUser), "current-context: c\n", "", 1) + "contexts:\n- name: c\n  context: {cluster: c, user: u}\n- name: d\n  context: {cluster: c, user: u}\n", "current-context", "2 contexts"},
		{"current-context missing", strings.Replace(kc(goodCluster, tokenUser), "current-context: c", "current-context: nope", 1), "current-context", "Not found"},
		{"no context", "apiVersion: v1\nkind: Config\n", "contexts", "no context"},
		{"not a kubeconfig", "this is not a kubeconfig", "kubeconfig", "not usable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, errs := Inline([]byte(c.in))
			if cfg != nil || len(errs) == 0 {
				t.Fatalf("accepted: %+v", cfg)
			}
			msg := errs.ToAggregate().Error()
			if !strings.Contains(msg, c.field) || !strings.Contains(msg, c.fix) {
				t.Errorf("error %q should name %q and say %q", msg, c.field, c.fix)
			}
		})
	}
}
