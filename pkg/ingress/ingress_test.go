package ingress

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

func sample() *v1beta1.MeshIngress {
	mi := &v1beta1.MeshIngress{}
	mi.Name, mi.Namespace = "shop", "istio-system"
	mi.Spec = v1beta1.MeshIngressSpec{
		Hosts:           []string{"shop.example.com"},
		GatewayClusters: []string{"c1", "c3"},
		Routes: []v1beta1.IngressRoute{{
			Name:         "shop",
			Service:      v1beta1.IngressService{Name: "echo", Namespace: "default", Port: 8080},
			Weights:      []v1beta1.ClusterWeight{{Cluster: "c1", Weight: 80}, {Cluster: "c3", Weight: 20}},
			HeaderRoutes: []v1beta1.HeaderRoute{{Name: "x-cluster", Value: "c2", Cluster: "c2"}},
		}},
	}
	return mi
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*v1beta1.MeshIngress)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(*v1beta1.MeshIngress) {}, ""},
		{"no hosts", func(m *v1beta1.MeshIngress) { m.Spec.Hosts = nil }, "spec.hosts: Required"},
		{"weights sum", func(m *v1beta1.MeshIngress) { m.Spec.Routes[0].Weights[0].Weight = 70 }, "spec.routes[0].weights: Invalid value: 90: weights add up to 90; make them add up to 100"},
		{"duplicate cluster", func(m *v1beta1.MeshIngress) { m.Spec.Routes[0].Weights[1].Cluster = "c1" }, "spec.routes[0].weights[1].cluster: Duplicate value"},
		{"bad header", func(m *v1beta1.MeshIngress) { m.Spec.Routes[0].HeaderRoutes[0].Name = "x cluster" }, "spec.routes[0].headerRoutes[0].name"},
		{"no port", func(m *v1beta1.MeshIngress) { m.Spec.Routes[0].Service.Port = 0 }, "spec.routes[0].service.port"},
		{"fallback same", func(m *v1beta1.MeshIngress) {
			m.Spec.Routes[0].Fallback = []v1beta1.RegionFallback{{From: "r1", To: "r1"}}
		}, "give two different regions"},
		{"prefix", func(m *v1beta1.MeshIngress) { m.Spec.Routes[0].PathPrefix = "api" }, "start the prefix with /"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi := sample()
			tc.edit(mi)
			err := Validate(mi)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case err != nil && !strings.Contains(err.Error(), "MeshIngress istio-system/shop"):
				t.Fatalf("error %v does not name the object", err)
			}
		})
	}
}

func TestRender(t *testing.T) {
	o, err := Render(sample(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Gateways) != 2 || o.Gateways[1].Spec.Selector[ClusterLabel] != "c3" || o.Gateways[1].Namespace != "istio-gateways" {
		t.Fatalf("gateways: %v", o.Gateways)
	}
	h := o.VirtualService.Spec.Http
	if len(h) != 2 || h[0].Match[0].Headers["x-cluster"].GetExact() != "c2" || h[0].Route[0].Destination.Subset != "cluster-c2" {
		t.Fatalf("header route: %v", h)
	}
	if len(h[1].Route) != 2 || h[1].Route[0].Weight != 80 || h[1].Route[1].Destination.Subset != "cluster-c3" {
		t.Fatalf("weighted route: %v", h[1])
	}
	if len(o.DestinationRules) != 1 {
		t.Fatalf("rules: %v", o.DestinationRules)
	}
	if got := Served(o.VirtualService); got != "  served: shop-c2-by-header (header x-cluster=c2) -> c2 100%\n  served: shop -> c1 80%, c3 20%\n" {
		t.Fatalf("served:\n%s", got)
	}
	dr := o.DestinationRules[0]
	if dr.Spec.Host != "echo.default.svc.cluster.local" || dr.Spec.ExportTo[0] != "." || len(dr.Spec.Subsets) != 3 {
		t.Fatalf("rule: %v", dr)
	}
	// Without a fallback, the failover entry no region matches turns on
	// istiod's locality order after the failoverPriority.
	if f := dr.Spec.TrafficPolicy.LoadBalancer.LocalityLbSetting.Failover; len(f) != 1 || f[0].From != NoRegion {
		t.Fatalf("failover %v", f)
	}
	for _, s := range dr.Spec.Subsets {
		fp := s.TrafficPolicy.LoadBalancer.LocalityLbSetting.FailoverPriority
		if len(fp) != 1 || fp[0] != ClusterLabel+"="+strings.TrimPrefix(s.Name, "cluster-") || s.TrafficPolicy.OutlierDetection == nil || len(s.Labels) != 0 {
			t.Fatalf("subset %s: %v", s.Name, s)
		}
	}
	if _, err := Render(sample(), nil, ""); err != nil {
		t.Fatal(err)
	}
	mi := sample()
	mi.Spec.GatewayClusters = nil
	if _, err := Render(mi, nil, ""); err == nil || !strings.Contains(err.Error(), "spec.gatewayClusters") {
		t.Fatalf("no entry cluster: %v", err)
	}
}

func TestWeights(t *testing.T) {
	w, err := ParseWeights("c1=50, c3=50%")
	if err != nil {
		t.Fatal(err)
	}
	mi, err := SetWeights(sample(), "", w)
	if err != nil {
		t.Fatal(err)
	}
	if got := Describe(mi); !strings.Contains(got, "shop / -> echo.default:8080: c1 50%, c3 50%") || !strings.Contains(got, "header x-cluster=c2") {
		t.Fatalf("describe:\n%s", got)
	}
	if _, err := ParseWeights("c1:50"); err == nil || !strings.Contains(err.Error(), "c1=80,c2=20") {
		t.Fatalf("bad form: %v", err)
	}
	bad, _ := ParseWeights("c1=50,c3=20")
	if _, err := SetWeights(sample(), "shop", bad); err == nil || !strings.Contains(err.Error(), "make them add up to 100") {
		t.Fatalf("sum: %v", err)
	}
	if _, err := SetWeights(sample(), "cart", w); err == nil || !strings.Contains(err.Error(), "name one of shop") {
		t.Fatalf("route: %v", err)
	}
}

// TestSample: samples/meshingress.yaml is a valid MeshIngress (strict: no
// unknown fields) that renders.
func TestSample(t *testing.T) {
	b, err := os.ReadFile("../../samples/meshingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mi := &v1beta1.MeshIngress{}
	if err := yaml.UnmarshalStrict(b, mi); err != nil {
		t.Fatal(err)
	}
	o, err := Render(mi, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Gateways) != 2 || len(o.DestinationRules[0].Spec.Subsets) != 3 {
		t.Fatalf("rendered %d gateways, %d subsets", len(o.Gateways), len(o.DestinationRules[0].Spec.Subsets))
	}
	// The route's fallback is the failover of the host and of every subset.
	for _, s := range o.DestinationRules[0].Spec.Subsets {
		f := s.TrafficPolicy.LoadBalancer.LocalityLbSetting.Failover
		if len(f) != 1 || f[0].From != "r1" || f[0].To != "r2" {
			t.Fatalf("subset %s failover %v", s.Name, f)
		}
	}
}
