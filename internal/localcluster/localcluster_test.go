package localcluster

import (
	"crypto/x509"
	"encoding/pem"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestServingCertVerifiesForLoopback(t *testing.T) {
	ca, err := newCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.issue(servingSpec())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "EC PRIVATE KEY" {
		t.Fatalf("key is not an EC PRIVATE KEY PEM block")
	}
	cert := parseCert(t, certPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.certPEM)
	for _, host := range []string{"127.0.0.1", "localhost", "::1", "kubernetes.default.svc"} {
		_, err := cert.Verify(x509.VerifyOptions{
			DNSName:   host,
			Roots:     roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("serving certificate does not verify for %s: %v", host, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Error("serving certificate verifies for example.com")
	}
	if !cert.NotAfter.After(time.Now().Add(30 * 24 * time.Hour)) {
		t.Errorf("serving certificate expires too soon: %v", cert.NotAfter)
	}
}

func TestClientCertCarriesUserAndGroups(t *testing.T) {
	ca, err := newCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.issue(clientSpec("alice", []string{"devs", "ops"}))
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, certPEM)
	if cert.Subject.CommonName != "alice" {
		t.Errorf("CN = %q, want alice", cert.Subject.CommonName)
	}
	if orgs := slices.Sorted(slices.Values(cert.Subject.Organization)); !reflect.DeepEqual(orgs, []string{"devs", "ops"}) {
		t.Errorf("O = %q, want [devs ops]", cert.Subject.Organization)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.certPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify as client auth: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate verifies for server auth")
	}
}

func TestCAIsCA(t *testing.T) {
	ca, err := newCA("x")
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, ca.certPEM)
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA=%v KeyUsage=%v", c.IsCA, c.KeyUsage)
	}
	if _, _, err := ca.issue(certSpec{}); err == nil {
		t.Error("issuing a certificate without a common name succeeded")
	}
}

func TestSigningKeyParses(t *testing.T) {
	keyPEM, err := newSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	if _, err := x509.ParseECPrivateKey(b.Bytes); err != nil {
		t.Fatal(err)
	}
}

// flagValue returns the value of --name in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestAPIServerArgs(t *testing.T) {
	files := newClusterFiles("/d")
	opts := ClusterOptions{Name: "remote1", Dir: "/d"}
	args := apiServerArgs(opts, files, "http://127.0.0.1:2379", 6443)
	want := map[string]string{
		"etcd-servers":                     "http://127.0.0.1:2379",
		"etcd-prefix":                      "/remote1",
		"bind-address":                     "127.0.0.1",
		"secure-port":                      "6443",
		"advertise-address":                "127.0.0.1",
		"cert-dir":                         "/d",
		"tls-cert-file":                    "/d/apiserver.crt",
		"tls-private-key-file":             "/d/apiserver.key",
		"client-ca-file":                   "/d/ca.crt",
		"service-account-issuer":           "https://remote1.local",
		"service-account-key-file":         "/d/sa.key",
		"service-account-signing-key-file": "/d/sa.key",
		"service-cluster-ip-range":         "10.96.0.0/16",
		"authorization-mode":               "Node,RBAC",
		"allow-privileged":                 "true",
	}
	for name, v := range want {
		if got, ok := flagValue(args, name); !ok || got != v {
			t.Errorf("--%s = %q (present %v), want %q", name, got, ok, v)
		}
	}
	if _, ok := flagValue(args, "audit-log-path"); ok {
		t.Error("audit log enabled without AuditLog")
	}
	for _, a := range args {
		if _, err := localproc.FlagName(a); err != nil {
			t.Error(err)
		}
	}

	opts.AuditLog = true
	opts.ExtraAPIServerArgs = []string{"--authorization-mode=RBAC", "--v=2"}
	args = apiServerArgs(opts, files, "http://127.0.0.1:2379", 6443)
	if v, _ := flagValue(args, "audit-log-path"); v != "/d/audit.log" {
		t.Errorf("--audit-log-path = %q", v)
	}
	if v, _ := flagValue(args, "audit-policy-file"); v != "/d/audit-policy.yaml" {
		t.Errorf("--audit-policy-file = %q", v)
	}
	n := 0
	for _, a := range args {
		if strings.HasPrefix(a, "--authorization-mode=") {
			n++
		}
	}
	if v, _ := flagValue(args, "authorization-mode"); v != "RBAC" || n != 1 {
		t.Errorf("--authorization-mode = %q given %d times, want RBAC once", v, n)
	}
	if args[len(args)-1] != "--v=2" {
		t.Errorf("extra args not appended: %q", args)
	}
}

func TestControllerManagerArgs(t *testing.T) {
	args := controllerManagerArgs(newClusterFiles("/d"), ClusterOptions{}.controllers())
	ctrls, _ := flagValue(args, "controllers")
	for _, c := range []string{"clusterrole-aggregation", "serviceaccount", "serviceaccount-token", "endpointslice", "endpointslicemirroring", "replicaset", "deployment", "garbagecollector", "namespace"} {
		if !slices.Contains(strings.Split(ctrls, ","), c) {
			t.Errorf("--controllers=%s lacks %s", ctrls, c)
		}
	}
	for name, v := range map[string]string{
		"kubeconfig":                       "/d/kubeconfig",
		"service-account-private-key-file": "/d/sa.key",
		"root-ca-file":                     "/d/ca.crt",
		"use-service-account-credentials":  "false",
		"leader-elect":                     "false",
		"bind-address":                     "127.0.0.1",
	} {
		if got, _ := flagValue(args, name); got != v {
			t.Errorf("--%s = %q, want %q", name, got, v)
		}
	}
}

func TestEtcdArgs(t *testing.T) {
	args := etcdArgs("/d/etcd-data", 1111, 2222)
	for name, v := range map[string]string{
		"data-dir":                    "/d/etcd-data",
		"listen-client-urls":          "http://127.0.0.1:1111",
		"advertise-client-urls":       "http://127.0.0.1:1111",
		"listen-peer-urls":            "http://127.0.0.1:2222",
		"initial-advertise-peer-urls": "http://127.0.0.1:2222",
		"initial-cluster":             "localcluster=http://127.0.0.1:2222",
	} {
		if got, _ := flagValue(args, name); got != v {
			t.Errorf("--%s = %q, want %q", name, got, v)
		}
	}
}

func TestValidateOptions(t *testing.T) {
	good := ClusterOptions{Name: "remote-1", Dir: "/d"}
	if err := good.validate(); err != nil {
		t.Errorf("validate(%+v): %v", good, err)
	}
	for _, bad := range []ClusterOptions{
		{Name: "", Dir: "/d"},
		{Name: "Primary", Dir: "/d"},
		{Name: "a/b", Dir: "/d"},
		{Name: "-a", Dir: "/d"},
		{Name: strings.Repeat("a", 64), Dir: "/d"},
		{Name: "a"},
		{Name: "a", Dir: "/d", ExtraAPIServerArgs: []string{"--v", "2"}},
	} {
		if err := bad.validate(); err == nil {
			t.Errorf("validate(%+v) succeeded", bad)
		}
	}
}

func TestWriteKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := writeKubeconfig(path, "primary", "https://127.0.0.1:1234", []byte("ca"), []byte("cert"), []byte("key")); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "primary" {
		t.Errorf("current-context = %q", cfg.CurrentContext)
	}
	ctx := cfg.Contexts["primary"]
	if ctx == nil || ctx.Cluster != "primary" || ctx.AuthInfo != "primary-admin" {
		t.Fatalf("context = %+v", ctx)
	}
	if s := cfg.Clusters["primary"].Server; s != "https://127.0.0.1:1234" {
		t.Errorf("server = %q", s)
	}
	if u := cfg.AuthInfos["primary-admin"]; string(u.ClientCertificateData) != "cert" || string(u.ClientKeyData) != "key" {
		t.Errorf("user = %+v", u)
	}
}

func TestDefaultBinariesFromEnv(t *testing.T) {
	dir := t.TempDir()
	exe := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv(EnvEtcd, exe("etcd"))
	t.Setenv(EnvKubeAPIServer, exe("kube-apiserver"))
	t.Setenv(EnvKubeControllerManager, exe("kube-controller-manager"))
	t.Setenv(EnvKubectl, exe("kubectl"))
	b, err := DefaultBinaries()
	if err != nil {
		t.Fatal(err)
	}
	if b.KubeAPIServer != filepath.Join(dir, "kube-apiserver") || b.Kubectl != filepath.Join(dir, "kubectl") {
		t.Errorf("DefaultBinaries = %+v", b)
	}

	t.Setenv(EnvKubectl, filepath.Join(dir, "nope"))
	t.Setenv("HOME", dir)
	_, err = DefaultBinaries()
	if err == nil || !strings.Contains(err.Error(), "kubectl") || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("missing kubectl: err = %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "kube-apiserver (") {
		t.Errorf("error names a binary that was found: %v", err)
	}

	t.Setenv(EnvKubectl, "")
	_, err = DefaultBinaries()
	want := filepath.Join(dir, ".cache", "meshfleet", "k8s-"+KubernetesVersion, "kubectl")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to mention %s", err, want)
	}
}

func TestControllersChosen(t *testing.T) {
	args := controllerManagerArgs(newClusterFiles("/d"), ClusterOptions{ControllerManager: true, Controllers: AggregationControllers}.controllers())
	if v, _ := flagValue(args, "controllers"); v != "clusterrole-aggregation" {
		t.Errorf("--controllers=%s, want clusterrole-aggregation only", v)
	}
}
