package render

import (
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
)

// TestExternalCA: spec.security.externalCA excludes the other ways of
// bringing a root, takes a root certificate and never a key, and leaves no
// lifetime for the operator to choose.
func TestExternalCA(t *testing.T) {
	root, err := ca.NewRoot(ca.RootOptions{TTL: 24 * time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	rootPEM := string(root.CertPEM)
	ttl := func(s string) *v1beta1.Duration { d := v1beta1.Duration(s); return &d }
	ext := func(s string) *v1beta1.ExternalCASpec { return &v1beta1.ExternalCASpec{RootCertificate: s} }
	cases := []struct {
		name  string
		sec   v1beta1.SecuritySpec
		field string
		fix   string
	}{
		{"with selfSigned", v1beta1.SecuritySpec{SelfSigned: ptr(true), ExternalCA: ext(rootPEM)}, "spec.security.selfSigned", "remove externalCA"},
		{"with caSecretRef", v1beta1.SecuritySpec{CASecretRef: &corev1.LocalObjectReference{Name: "root"}, ExternalCA: ext(rootPEM)}, "spec.security.caSecretRef", "keep one of them"},
		{"no root", v1beta1.SecuritySpec{ExternalCA: ext(" ")}, "spec.security.externalCA.rootCertificate", "root CA certificate, PEM"},
		{"not PEM", v1beta1.SecuritySpec{ExternalCA: ext("root")}, "spec.security.externalCA.rootCertificate", "BEGIN CERTIFICATE"},
		{"root with its key", v1beta1.SecuritySpec{ExternalCA: ext(rootPEM + string(root.KeyPEM))}, "spec.security.externalCA.rootCertificate", "keep its key outside the clusters"},
		{"rootCertTTL", v1beta1.SecuritySpec{RootCertTTL: ttl("24h"), ExternalCA: ext(rootPEM)}, "spec.security.rootCertTTL", "issues no root"},
		{"intermediateCertTTL", v1beta1.SecuritySpec{IntermediateCertTTL: ttl("24h"), ExternalCA: ext(rootPEM)}, "spec.security.intermediateCertTTL", "sign-intermediate --ttl"},
		{"bad warnBefore", v1beta1.SecuritySpec{ExternalCA: &v1beta1.ExternalCASpec{RootCertificate: rootPEM, WarnBefore: ttl("soon")}}, "spec.security.externalCA.warnBefore", "positive duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{Version: "1.30.3", Security: c.sec}}
			cp, errs := FromIstio(in)
			if cp != nil || len(errs) == 0 {
				t.Fatalf("accepted: %+v", cp.CA)
			}
			msg := errs.ToAggregate().Error()
			if !strings.Contains(msg, c.field) || !strings.Contains(msg, c.fix) {
				t.Errorf("error %q should name %q and say %q", msg, c.field, c.fix)
			}
		})
	}

	in := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{Version: "1.30.3", ClusterName: "primary", MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		Security: v1beta1.SecuritySpec{SelfSigned: ptr(false), ExternalCA: &v1beta1.ExternalCASpec{RootCertificate: rootPEM, WarnBefore: ttl("720h")}}}}
	primary, errs := FromIstio(in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if primary.CA.SelfSigned || primary.CA.External == nil || primary.CA.External.RootPEM != rootPEM || primary.CA.External.WarnBefore.Duration != 720*time.Hour {
		t.Errorf("CA = %+v", primary.CA)
	}

	// A remote follows the primary's CA and may not choose lifetimes.
	for _, c := range []struct {
		name       string
		sec        v1beta1.SecuritySpec
		field, fix string
	}{
		{"remote externalCA", v1beta1.SecuritySpec{ExternalCA: ext(rootPEM)}, "spec.security", "set them on the Istio resource"},
		{"remote intermediateCertTTL", v1beta1.SecuritySpec{IntermediateCertTTL: ttl("24h")}, "spec.security.intermediateCertTTL", "sign this cluster's intermediate yourself"},
	} {
		ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "r1", Namespace: "istio-system"}, Spec: v1beta1.RemoteIstioSpec{Security: c.sec}}
		if _, errs := FromRemoteIstio(ri, primary); !strings.Contains(errs.ToAggregate().Error(), c.field) || !strings.Contains(errs.ToAggregate().Error(), c.fix) {
			t.Errorf("%s: errors %v, want %s and %q", c.name, errs, c.field, c.fix)
		}
	}
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "r1", Namespace: "istio-system"}}
	remote, errs := FromRemoteIstio(ri, primary)
	if len(errs) > 0 || remote.CA.External == nil {
		t.Errorf("remote: %v, CA %+v", errs, remote)
	}
}

// TestExternalCASample: the sample is a valid Istio resource.
func TestExternalCASample(t *testing.T) {
	b, err := os.ReadFile("../../samples/istio-external-ca.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := &v1beta1.Istio{}
	if err := yaml.UnmarshalStrict(b, in); err != nil {
		t.Fatal(err)
	}
	cp, errs := FromIstio(in)
	if len(errs) > 0 || cp.CA.External == nil {
		t.Fatalf("%v %+v", errs, cp)
	}
}
