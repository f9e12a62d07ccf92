package meshingress

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ingress"
)

func TestUnstructured(t *testing.T) {
	mi := &v1beta1.MeshIngress{}
	mi.Name, mi.Namespace = "shop", "istio-system"
	mi.Spec = v1beta1.MeshIngressSpec{Hosts: []string{"shop.example.com"}, GatewayClusters: []string{"c1"},
		Routes: []v1beta1.IngressRoute{{Name: "shop", Service: v1beta1.IngressService{Name: "echo", Namespace: "default", Port: 80},
			Weights: []v1beta1.ClusterWeight{{Cluster: "c1", Weight: 100}}}}}
	objs, err := ingress.Render(mi, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	us, err := Unstructured(objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 3 || us[0].GetKind() != "Gateway" || us[2].GetKind() != "DestinationRule" || us[2].GetNamespace() != "istio-gateways" {
		t.Fatalf("objects: %v", us)
	}
	subsets, _, _ := unstructured.NestedSlice(us[2].Object, "spec", "subsets")
	fp, _, _ := unstructured.NestedStringSlice(subsets[0].(map[string]any), "trafficPolicy", "loadBalancer", "localityLbSetting", "failoverPriority")
	if len(fp) != 1 || fp[0] != "topology.istio.io/cluster=c1" {
		t.Fatalf("subset: %v", subsets[0])
	}
	od, _, _ := unstructured.NestedMap(us[2].Object, "spec", "trafficPolicy", "outlierDetection")
	if od["interval"] != "2s" {
		t.Fatalf("outlier detection: %v", od)
	}
	w, _, _ := unstructured.NestedSlice(us[1].Object, "spec", "http")
	if len(w) != 1 {
		t.Fatalf("http: %v", w)
	}
}
