package render

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

func TestFromIstioRejects(t *testing.T) {
	f := false
	ttl := func(s string) *v1beta1.Duration { d := v1beta1.Duration(s); return &d }
	cases := []struct {
		name  string
		spec  v1beta1.IstioSpec
		field string
		fix   string
	}{
		{"cidr out of range", v1beta1.IstioSpec{IncludeIPRanges: "10.0.0.0/33"}, "spec.includeIPRanges", "comma-separated CIDRs"},
		{"exclude not a cidr", v1beta1.IstioSpec{ExcludeIPRanges: "10.0.0.1"}, "spec.excludeIPRanges", "comma-separated CIDRs"},
		{"no version", v1beta1.IstioSpec{Version: "-"}, "", ""},
		{"own root without secret", v1beta1.IstioSpec{Security: v1beta1.SecuritySpec{SelfSigned: &f}}, "spec.security.caSecretRef", "set selfSigned: true"},
		{"self-signed and secret", v1beta1.IstioSpec{Security: v1beta1.SecuritySpec{SelfSigned: ptr(true), CASecretRef: &corev1.LocalObjectReference{Name: "x"}}}, "spec.security.caSecretRef", "remove caSecretRef"},
		{"renew before ttl", v1beta1.IstioSpec{Security: v1beta1.SecuritySpec{IntermediateCertTTL: ttl("24h"), RenewBefore: ttl("25h")}}, "spec.security.renewBefore", "shorter than intermediateCertTTL"},
		{"intermediate outlives root", v1beta1.IstioSpec{Security: v1beta1.SecuritySpec{RootCertTTL: ttl("24h"), IntermediateCertTTL: ttl("48h")}}, "spec.security.intermediateCertTTL", "lengthen rootCertTTL"},
		{"bad duration", v1beta1.IstioSpec{Security: v1beta1.SecuritySpec{RootCertTTL: ttl("forever")}}, "spec.security.rootCertTTL", "8760h"},
		{"tagged hub", v1beta1.IstioSpec{Hub: "docker.io/istio:1.2"}, "spec.hub", "spec.version"},
		{"digest hub", v1beta1.IstioSpec{Hub: "docker.io/istio@sha256:abc"}, "spec.hub", "registry and repository"},
		{"region without registry domain", v1beta1.IstioSpec{Hub: "istio", DockerImage: v1beta1.DockerImageSpec{Region: "eu"}}, "spec.hub", "{region}"},
		{"bad log level", v1beta1.IstioSpec{Logging: v1beta1.LoggingSpec{Level: "verbose"}}, "spec.logging.level", "scope:level"},
		{"self failover", v1beta1.IstioSpec{LocalityLB: v1beta1.LocalityLBSpec{Failover: []v1beta1.LocalityFailover{{From: "a", To: "a"}}}}, "spec.localityLB.failover[0].to", "different region"},
		{"reserved gateway name", v1beta1.IstioSpec{Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Name: EastWestGatewayName, Enabled: true}}}}, "spec.gateways.ingress[0].name", "reserved"},
		{"duplicate gateway", v1beta1.IstioSpec{Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Enabled: true}, {Enabled: true}}}}, "spec.gateways.ingress[1].name", "Duplicate"},
		{"two k8s ingress gateways", v1beta1.IstioSpec{Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Name: "a", Enabled: true, K8sIngress: &v1beta1.K8sIngressSpec{}}, {Name: "b", Enabled: true, K8sIngress: &v1beta1.K8sIngressSpec{}}}}}, "spec.gateways.ingress", "only one"},
		{"bad namespace", v1beta1.IstioSpec{AutoInjectionNamespaces: []string{"Not_A_Name"}}, "spec.autoInjectionNamespaces[0]", "lower case"},
		{"sampling over 100", v1beta1.IstioSpec{Tracing: v1beta1.TracingSpec{SamplingPercent: ptr(101.0)}}, "spec.tracing.samplingPercent", "between 0 and 100"},
		{"unknown mode", v1beta1.IstioSpec{MultiCluster: v1beta1.MultiClusterSpec{Mode: "mesh"}}, "spec.multiCluster.mode", "gatewayConnected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.spec.Version == "" {
				c.spec.Version = "1.30.3"
			} else if c.spec.Version == "-" {
				c.spec.Version = ""
				c.field, c.fix = "spec.version", "e.g. 1.30.3"
			}
			in := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: c.spec}
			cp, errs := FromIstio(in)
			if cp != nil || len(errs) == 0 {
				t.Fatalf("accepted: %+v", cp)
			}
			msg := errs.ToAggregate().Error()
			if !strings.Contains(msg, c.field) || !strings.Contains(msg, c.fix) {
				t.Errorf("error %q should name %q and say %q", msg, c.field, c.fix)
			}
		})
	}
}

func TestResolveHub(t *testing.T) {
	for _, c := range []struct{ hub, region, want string }{
		{"registry.example.com/istio", "", "registry.example.com/istio"},
		{"registry.example.com/istio", "cn-beijing", "registry.cn-beijing.example.com/istio"},
		{"registry-{region}.example.com/istio", "us-east-1", "registry-us-east-1.example.com/istio"},
		{"registry-{region}.example.com/istio", "", "registry-.example.com/istio"},
		{"localhost:5000/istio", "", "localhost:5000/istio"},
	} {
		got, err := resolveHub(c.hub, c.region)
		if err != nil || got != c.want {
			t.Errorf("resolveHub(%q, %q) = %q, %v; want %q", c.hub, c.region, got, err, c.want)
		}
	}
}

func TestFromIstioDefaults(t *testing.T) {
	in := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{Version: "1.30.3"}}
	cp, errs := FromIstio(in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if cp.ClusterName != "istio" || cp.Hub != DefaultHub || !cp.CA.SelfSigned || cp.MTLSMode != "PERMISSIVE" ||
		cp.Proxy.IncludeIPRanges != "*" || !cp.SidecarInjection || cp.IstiodReplicas != 1 || len(cp.Gateways) != 0 ||
		cp.CA.RenewBefore.Duration != DefaultIntermediateTTL/3 || cp.Mode != v1beta1.MultiClusterNone {
		t.Errorf("defaults: %+v", cp)
	}
}

func ptr[T any](v T) *T { return &v }
