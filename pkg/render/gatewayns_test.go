package render

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestGatewaysApartFromCACerts renders every golden input and checks that no
// gateway object is in the control plane's namespace (where cacerts is), and
// that no gateway Role there grants anything on Secrets (istiod's own Role
// does, by design).
func TestGatewaysApartFromCACerts(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs in testdata: %v", err)
	}
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".in.yaml"), func(t *testing.T) {
			cp := readControlPlane(t, in)
			m, err := Render(cp)
			if err != nil {
				t.Fatal(err)
			}
			var gatewayNS bool
			for _, o := range m.Objects {
				if o.GetKind() == "Namespace" && o.GetName() == cp.GatewayNamespace {
					gatewayNS = true
				}
				if o.GetNamespace() != cp.Namespace {
					continue
				}
				if strings.Contains(o.GetName(), "gateway") && o.GetKind() != "Gateway" && o.GetKind() != "VirtualService" {
					t.Errorf("%s is in the control plane's namespace, beside cacerts", ObjectKey(o))
				}
				if o.GetKind() != "Role" || !strings.Contains(o.GetName(), "gateway") {
					continue
				}
				rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
				for _, r := range rules {
					res, _ := r.(map[string]any)["resources"].([]any)
					if slices.Contains(res, any("secrets")) {
						t.Errorf("%s grants %v on Secrets in the control plane's namespace", ObjectKey(o), r.(map[string]any)["verbs"])
					}
				}
			}
			if len(cp.Gateways) > 0 && !gatewayNS {
				t.Errorf("gateways rendered without their namespace %s", cp.GatewayNamespace)
			}
		})
	}
}
