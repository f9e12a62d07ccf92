package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
)

// TestSignIntermediate: the command signs, offline, a cacerts Secret that
// the operator's external-CA check accepts without warnings (the same
// constraints as the operator's own intermediates), and prints no root key.
func TestSignIntermediate(t *testing.T) {
	now := time.Now()
	root, err := ca.NewRoot(ca.RootOptions{TTL: 365 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "root-key.pem")
	if err := os.WriteFile(certFile, root.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, root.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, primary := range []bool{true, false} {
		args := []string{"ca", "sign-intermediate", "--root-cert", certFile, "--root-key", keyFile, "--cluster", "east", "-n", "istio-system", "--ttl", "720h"}
		if primary {
			args = append(args, "--primary")
		}
		cmd := newRootCommand()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out.Bytes(), root.KeyPEM) || strings.Contains(out.String(), string(root.KeyPEM[30:60])) {
			t.Fatal("the root key is in the output")
		}
		s := &corev1.Secret{}
		if err := yaml.UnmarshalStrict(out.Bytes(), s); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if s.Name != "cacerts" || s.Namespace != "istio-system" || len(s.Labels) != 0 {
			t.Errorf("Secret %s/%s labels %v", s.Namespace, s.Name, s.Labels)
		}
		check, err := ca.CheckExternalCACerts(s.Data, []*x509.Certificate{root.Cert}, ca.ClusterConstraints("istio-system", primary), 0, now)
		if err != nil || len(check.Warnings) > 0 {
			t.Fatalf("primary=%v: %v %v", primary, err, check)
		}
		if d := check.Intermediate.NotAfter.Sub(now); d < 719*time.Hour || d > 721*time.Hour {
			t.Errorf("lifetime %s, want 720h", d)
		}
		if !strings.Contains(errOut.String(), "kubectl --context east apply") {
			t.Errorf("summary %q", errOut.String())
		}
	}

	for _, bad := range [][]string{
		{"--root-cert", certFile, "--cluster", "east"},
		{"--root-cert", certFile, "--root-key", keyFile, "--cluster", "East.1"},
		{"--root-cert", certFile, "--root-key", certFile, "--cluster", "east"},
	} {
		cmd := newRootCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetArgs(append([]string{"ca", "sign-intermediate"}, bad...))
		err := cmd.Execute()
		if err == nil {
			t.Errorf("%v accepted", bad)
			continue
		}
		t.Logf("%v: %v", bad, err)
	}
}

// TestStatusShowsCAMode: status prints each cluster's CA mode, its
// intermediate's expiry and the operator's warnings, which are not problems.
func TestStatusShowsCAMode(t *testing.T) {
	expiry := metav1.NewTime(time.Now().Add(50 * time.Hour))
	st := &v1beta1.CertificatesStatus{Mode: v1beta1.CAModeExternal, IntermediateExpiry: &expiry,
		Warnings: []string{"ca-cert.pem expires at X (in 50h0m0s); sign a new intermediate and replace the Secret before then"}}
	primary := clusterStatus{Name: "istio", Role: "primary", ClusterName: "primary", Phase: v1beta1.PhaseReady}
	certificates(&primary, st)
	remote := clusterStatus{Name: "east", Role: "remote", ClusterName: "east", Phase: v1beta1.PhaseReady}
	certificates(&remote, &v1beta1.CertificatesStatus{Mode: v1beta1.CAModeExternal, IntermediateExpiry: &expiry})
	var out bytes.Buffer
	if err := printClusters(&out, "table", []clusterStatus{primary, remote}, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CA mode                  External", "intermediate CA expires  " + expiry.UTC().Format(time.RFC3339) + " (in 50h0m0s)", "warning: ca-cert.pem expires at X"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, out.String())
		}
	}
	if strings.Count(out.String(), "CA mode") != 2 || countProblems([]clusterStatus{primary, remote}) != 0 {
		t.Errorf("status:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}
