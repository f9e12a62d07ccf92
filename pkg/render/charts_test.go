package render

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

func TestSupportedVersions(t *testing.T) {
	sets, err := SupportedVersions()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sets {
		got = append(got, s.Minor+"="+s.Version)
	}
	want := "1.29=1.29.6 1.30=1.30.3 1.31=1.31.0-dev.eed52ebb66ad"
	if strings.Join(got, " ") != want {
		t.Errorf("chart sets %q, want %q", strings.Join(got, " "), want)
	}
}

func TestChartSetFor(t *testing.T) {
	for v, want := range map[string]string{"1.29.0": "1.29.6", "1.29.6": "1.29.6", "1.30.3": "1.30.3", "1.30.0-rc.1": "1.30.3", "1.31.0": "1.31.0-dev.eed52ebb66ad"} {
		s, err := ChartSetFor(v)
		if err != nil || s.Version != want {
			t.Errorf("ChartSetFor(%s) = %v, %v; want charts %s", v, s, err, want)
		}
	}
	for _, v := range []string{"1.1.8", "1.28.10", "1.32.0", "2.30.3"} {
		_, err := ChartSetFor(v)
		if err == nil || !strings.Contains(err.Error(), "1.29.x (charts 1.29.6), 1.30.x (charts 1.30.3), 1.31.x") {
			t.Errorf("ChartSetFor(%s): err %v does not list the supported minors", v, err)
		}
	}
}

// TestUnsupportedVersionRefused: FromIstio and FromRemote name spec.version
// and list the supported minors.
func TestUnsupportedVersionRefused(t *testing.T) {
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{Version: "1.1.8"}}
	_, errs := FromIstio(ist)
	if !hasFieldError(errs, "spec.version", "unsupported release") {
		t.Errorf("FromIstio with 1.1.8: %v", errs)
	}
	ist.Spec.Version = "1.30.3"
	cp, errs := FromIstio(ist)
	if len(errs) > 0 || cp.ChartVersion != "1.30.3" {
		t.Fatalf("FromIstio with 1.30.3: chart %q, %v", cp.ChartVersion, errs)
	}
}

func hasFieldError(errs field.ErrorList, f, msg string) bool {
	for _, e := range errs {
		if e.Field == f && strings.Contains(e.Error(), msg) {
			return true
		}
	}
	return false
}

// TestEveryChartSetRendersValidObjects renders a primary at each supported
// minor: chart version labels land in object labels, so they must be valid
// label values (a semver build suffix "+…" is not).
func TestEveryChartSetRendersValidObjects(t *testing.T) {
	sets, err := SupportedVersions()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		t.Run(s.Minor, func(t *testing.T) {
			cp, errs := FromIstio(&v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
				Spec: v1beta1.IstioSpec{Version: s.Minor + ".0", Gateways: v1beta1.GatewaysSpec{Enabled: true}}})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			m, err := Render(cp)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, o := range append(m.CRDs, m.Objects...) {
				for k, v := range o.GetLabels() {
					if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
						t.Errorf("%s %s: label %s=%q: %v", o.GetKind(), o.GetName(), k, v, msgs)
					}
					if k == "helm.sh/chart" && v == "istiod-"+s.Version {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("no object labelled helm.sh/chart=istiod-%s", s.Version)
			}
		})
	}
}
