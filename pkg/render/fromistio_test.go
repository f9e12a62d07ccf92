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
		{"hub with a quote", v1beta1.IstioSpec{Hub: `docker.io/istio"`}, "spec.hub", "quote"},
		{"version with a newline", v1beta1.IstioSpec{Version: "1.30.3\nx"}, "spec.version", "image tag"},
		{"network with a space", v1beta1.IstioSpec{Network: "net 1"}, "spec.network", "label value"},
		{"unknown outbound mode", v1beta1.IstioSpec{OutboundTrafficPolicy: v1beta1.OutboundTrafficPolicySpec{Mode: "BLOCK"}}, "spec.outboundTrafficPolicy.mode", "REGISTRY_ONLY"},
		{"unknown service type", v1beta1.IstioSpec{Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Enabled: true, ServiceType: "External"}}}}, "spec.gateways.ingress[0].serviceType", "ClusterIP"},
		{"gateway name not a label", v1beta1.IstioSpec{Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Name: "In_Gress", Enabled: true}}}}, "spec.gateways.ingress[0].name", "RFC 1123"},
		{"region not a label value", v1beta1.IstioSpec{LocalityLB: v1beta1.LocalityLBSpec{Failover: []v1beta1.LocalityFailover{{From: "us east", To: "eu"}}}}, "spec.localityLB.failover[0].from", "node label value"},
		{"server address with a newline", v1beta1.IstioSpec{LocalityLB: v1beta1.LocalityLBSpec{ServerAddress: "a\nb:15020"}}, "spec.localityLB.serverAddress", "host:port"},
		{"proxy log level", v1beta1.IstioSpec{Proxy: v1beta1.ProxySpec{LogLevel: "loud"}}, "spec.proxy.logLevel", "critical"},
		{"proxy concurrency", v1beta1.IstioSpec{Proxy: v1beta1.ProxySpec{Concurrency: ptr(int32(100000))}}, "spec.proxy.concurrency", "1024"},
		{"hub with a newline", v1beta1.IstioSpec{Hub: "docker.io/istio\n  evil: true"}, "spec.hub", "line break"},
		{"hub upper case", v1beta1.IstioSpec{Hub: "docker.io/Istio"}, "spec.hub", "lower-case repository path"},
		{"hub too long", v1beta1.IstioSpec{Hub: "docker.io/" + strings.Repeat("a", 200)}, "spec.hub", "at most 200"},
		{"hub region placeholder without region", v1beta1.IstioSpec{Hub: "registry-{region}.example.com/istio"}, "spec.hub", "set the region"},
		{"cluster name 64 characters", v1beta1.IstioSpec{ClusterName: strings.Repeat("c", 64)}, "spec.clusterName", "no more than 63"},
		{"cluster name with dots", v1beta1.IstioSpec{ClusterName: "eu.west"}, "spec.clusterName", "must not contain dots"},
		{"kube-system injection", v1beta1.IstioSpec{AutoInjectionNamespaces: []string{"default", "kube-system"}}, "spec.autoInjectionNamespaces[1]", "Kubernetes' own namespaces"},
		{"kube-node-lease injection", v1beta1.IstioSpec{AutoInjectionNamespaces: []string{"kube-node-lease"}}, "spec.autoInjectionNamespaces[0]", "Kubernetes' own namespaces"},
		{"control-plane namespace injection", v1beta1.IstioSpec{AutoInjectionNamespaces: []string{"istio-system"}}, "spec.autoInjectionNamespaces[0]", "istiod would inject itself"},
		{"replicaCount 10^6", v1beta1.IstioSpec{SidecarInjector: v1beta1.SidecarInjectorSpec{ReplicaCount: ptr(int32(1000000))}}, "spec.sidecarInjector.replicaCount", "between 1 and 100"},
		{"replicaCount 0", v1beta1.IstioSpec{SidecarInjector: v1beta1.SidecarInjectorSpec{ReplicaCount: ptr(int32(0))}}, "spec.sidecarInjector.replicaCount", "between 1 and 100"},
		{"gateway replicaCount 10^6", v1beta1.IstioSpec{Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Enabled: true, ReplicaCount: ptr(int32(1000000))}}}}, "spec.gateways.ingress[0].replicaCount", "between 0 and 100"},
		{"east-west replicaCount negative", v1beta1.IstioSpec{MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterGatewayConnected}, Gateways: v1beta1.GatewaysSpec{EastWest: &v1beta1.EastWestGatewaySpec{ReplicaCount: ptr(int32(-1))}}}, "spec.gateways.eastWest.replicaCount", "between 0 and 100"},
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

// TestClusterNameFromObjectName: the cluster name defaults to metadata.name,
// which the API server lets hold dots and 253 characters.
func TestClusterNameFromObjectName(t *testing.T) {
	for _, name := range []string{"eu.west", strings.Repeat("c", 64)} {
		in := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{Version: "1.30.3"}}
		_, errs := FromIstio(in)
		msg := errs.ToAggregate()
		if msg == nil || !strings.Contains(msg.Error(), "metadata.name") || !strings.Contains(msg.Error(), "set spec.clusterName") {
			t.Errorf("Istio named %q: errors %v, want metadata.name and the fix", name, msg)
		}
		in.Spec.ClusterName = "eu-west"
		if _, errs := FromIstio(in); len(errs) > 0 {
			t.Errorf("Istio named %q with spec.clusterName: %v", name, errs)
		}
	}
}

// TestFromRemoteIstioAcceptsPrimaryValues: injection settings equal to the
// primary's are what applies, so they are accepted; hub, region and version
// are the remote's own (its gateways' proxy image).
func TestFromRemoteIstioAcceptsPrimaryValues(t *testing.T) {
	primary, errs := FromIstio(&v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Spec: v1beta1.IstioSpec{Version: "1.30.3", ClusterName: "primary", MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
			IncludeIPRanges: "10.0.0.0/8", Proxy: v1beta1.ProxySpec{LogLevel: "debug"}}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "r1", Namespace: "istio-system"}, Spec: v1beta1.RemoteIstioSpec{
		IncludeIPRanges: " 10.0.0.0/8", Proxy: v1beta1.ProxySpec{LogLevel: "debug"},
		Hub: "registry.example.com/istio", DockerImage: v1beta1.DockerImageSpec{Region: "cn-beijing"}, Version: "1.29.6"}}
	cp, errs := FromRemoteIstio(ri, primary)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if cp.Proxy.IncludeIPRanges != "10.0.0.0/8" || cp.Proxy.LogLevel != "debug" || cp.ChartVersion != "1.29.6" {
		t.Errorf("remote proxy %+v, charts %s", cp.Proxy, cp.ChartVersion)
	}
}

func TestFromRemoteIstioRejects(t *testing.T) {
	primary, errs := FromIstio(&v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Spec: v1beta1.IstioSpec{Version: "1.30.3", ClusterName: "primary", MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork}}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cases := []struct {
		name, objectName string
		spec             v1beta1.RemoteIstioSpec
		field, fix       string
	}{
		{"hub with a quote", "r1", v1beta1.RemoteIstioSpec{Hub: `evil"hub`}, "spec.hub", "quote"},
		{"pilot address with a space", "r1", v1beta1.RemoteIstioSpec{PilotAddress: "a b"}, "spec.pilotAddress", "east-west gateway"},
		{"version with a newline", "r1", v1beta1.RemoteIstioSpec{Version: "1.30.3\n"}, "spec.version", "image tag"},
		{"hub with a newline", "r1", v1beta1.RemoteIstioSpec{Hub: "docker.io/istio\nx"}, "spec.hub", "line break"},
		{"name with dots", "eu.west.1", v1beta1.RemoteIstioSpec{}, "metadata.name", "set spec.clusterName"},
		{"name of 64 characters", strings.Repeat("r", 64), v1beta1.RemoteIstioSpec{}, "metadata.name", "at most 63 characters"},
		{"kube-system injection", "r1", v1beta1.RemoteIstioSpec{AutoInjectionNamespaces: []string{"kube-system"}}, "spec.autoInjectionNamespaces[0]", "Kubernetes' own"},
		{"kube-public injection", "r1", v1beta1.RemoteIstioSpec{AutoInjectionNamespaces: []string{"kube-public"}}, "spec.autoInjectionNamespaces[0]", "Kubernetes' own"},
		{"control-plane namespace injection", "r1", v1beta1.RemoteIstioSpec{AutoInjectionNamespaces: []string{"istio-system"}}, "spec.autoInjectionNamespaces[0]", "inject itself"},
		{"injector replicas", "r1", v1beta1.RemoteIstioSpec{SidecarInjector: v1beta1.SidecarInjectorSpec{ReplicaCount: ptr(int32(1))}}, "spec.sidecarInjector.replicaCount", "no injector runs in a remote cluster"},
		{"own includeIPRanges", "r1", v1beta1.RemoteIstioSpec{IncludeIPRanges: "10.0.0.0/8"}, "spec.includeIPRanges", "traffic.sidecar.istio.io/includeOutboundIPRanges"},
		{"bad includeIPRanges", "r1", v1beta1.RemoteIstioSpec{IncludeIPRanges: "10.0.0.0/33"}, "spec.includeIPRanges", "is not a CIDR"},
		{"own excludeIPRanges", "r1", v1beta1.RemoteIstioSpec{ExcludeIPRanges: "10.0.0.0/8"}, "spec.excludeIPRanges", "on Istio istio-system/istio"},
		{"own proxy settings", "r1", v1beta1.RemoteIstioSpec{Proxy: v1beta1.ProxySpec{LogLevel: "debug"}}, "spec.proxy", "set spec.proxy on Istio istio-system/istio"},
		{"k8sIngress in a remote", "r1", v1beta1.RemoteIstioSpec{Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Enabled: true, K8sIngress: &v1beta1.K8sIngressSpec{}}}}}, "spec.gateways.ingress[0].k8sIngress", "from the primary (the config cluster) only"},
		{"version newer than istiod", "r1", v1beta1.RemoteIstioSpec{Version: "1.31.0"}, "spec.version", "newer than istiod"},
		{"unsupported version", "r1", v1beta1.RemoteIstioSpec{Version: "1.28.10"}, "spec.version", "1.29.x (charts 1.29.6)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: c.objectName, Namespace: "istio-system"}, Spec: c.spec}
			cp, errs := FromRemoteIstio(ri, primary)
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

// TestTokenFileOptionOnlyWithTunnel: istiod may read token files named in
// remote secrets only when a member is reached through the tunnel.
func TestTokenFileOptionOnlyWithTunnel(t *testing.T) {
	cp, errs := FromIstio(&v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Spec: v1beta1.IstioSpec{Version: "1.30.3", MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterGatewayConnected}}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, c := range []struct {
		name    string
		members []Member
		want    bool
	}{
		{"no members", nil, false},
		{"direct members", []Member{{ClusterName: "r1", KubeconfigSecret: "r1-kubeconfig"}}, false},
		{"a tunnelled member", []Member{{ClusterName: "r1", KubeconfigSecret: "r1-kubeconfig"}, {ClusterName: "r2"}}, true},
	} {
		cp.Members = c.members
		m, err := Render(cp)
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, o := range m.Objects {
			if o.GetKind() == "Deployment" && o.GetName() == "istiod" {
				b, _ := o.MarshalJSON()
				got = strings.Contains(string(b), "PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS")
			}
		}
		if got != c.want {
			t.Errorf("%s: istiod has PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestResolveHub(t *testing.T) {
	for _, c := range []struct{ hub, region, want string }{
		{"registry.example.com/istio", "", "registry.example.com/istio"},
		{"registry.example.com/istio", "cn-beijing", "registry.cn-beijing.example.com/istio"},
		{"registry-{region}.example.com/istio", "us-east-1", "registry-us-east-1.example.com/istio"},
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
