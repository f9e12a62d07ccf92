package install

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestTunnelAgent: the agent manifest for one cluster, with its image, its
// certificate Secret right after the namespace, and a rolling update that
// starts a new agent before an old one stops.
func TestTunnelAgent(t *testing.T) {
	objs, err := TunnelAgent("west", "tunnel.example.com:443", "registry.example.com/meshfleet:v2", map[string][]byte{"tls.crt": []byte("C")})
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetKind() != "Namespace" || objs[1].GetKind() != "Secret" || objs[1].GetName() != AgentSecretName {
		t.Errorf("first objects %s %s, %s %s: want the namespace, then the agent's Secret", objs[0].GetKind(), objs[0].GetName(), objs[1].GetKind(), objs[1].GetName())
	}
	var dep *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			dep = o
		}
	}
	if dep == nil {
		t.Fatal("no Deployment")
	}
	y, _ := yaml.Marshal(dep.Object)
	for _, want := range []string{"image: registry.example.com/meshfleet:v2", "--cluster=west", "--server=https://tunnel.example.com:443", "maxUnavailable: 0", "replicas: 2"} {
		if !strings.Contains(string(y), want) {
			t.Errorf("agent Deployment lacks %q:\n%s", want, y)
		}
	}
	if _, err := TunnelAgent("west", "", "img", nil); err == nil {
		t.Error("no server: want an error")
	}
}
