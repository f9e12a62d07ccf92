package render

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestGatewaysSpreadOverZones: every gateway Deployment of every golden
// input spreads its replicas over zones, with a selector that matches its
// own pods (a selector matching nothing spreads nothing).
func TestGatewaysSpreadOverZones(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.in.yaml")
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".in.yaml"), func(t *testing.T) {
			cp := readControlPlane(t, in)
			m, err := Render(cp)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range m.Objects {
				if o.GetKind() != "Deployment" || o.GetNamespace() != cp.GatewayNamespace {
					continue
				}
				d := &appsv1.Deployment{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
					t.Fatal(err)
				}
				zone := false
				for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
					sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
					if err != nil {
						t.Fatal(err)
					}
					if c.TopologyKey == "topology.kubernetes.io/zone" && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						zone = true
					}
				}
				if !zone {
					t.Errorf("gateway %s: no zone spread matching its pods %v", d.Name, d.Spec.Template.Labels)
				}
			}
		})
	}
}
