package topology

import "testing"

func TestNodeLocality(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   Locality
	}{
		{"current labels", map[string]string{LabelRegion: "r1", LabelZone: "z1", LabelSubzone: "s1"}, Locality{"r1", "z1", "s1"}},
		{"legacy fallback", map[string]string{LabelRegionLegacy: "r1", LabelZoneLegacy: "z1"}, Locality{Region: "r1", Zone: "z1"}},
		{"current wins over legacy", map[string]string{LabelRegion: "r1", LabelRegionLegacy: "old", LabelZoneLegacy: "z0"}, Locality{Region: "r1", Zone: "z0"}},
		{"none", nil, Locality{}},
	}
	for _, tt := range tests {
		if got := NodeLocality(tt.labels); got != tt.want {
			t.Errorf("%s: NodeLocality = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestPodLocality(t *testing.T) {
	if l, ok := PodLocality(map[string]string{LabelIstioLocality: "r1.z1.s1"}); !ok || l != (Locality{"r1", "z1", "s1"}) {
		t.Errorf("PodLocality(r1.z1.s1) = %+v, %v", l, ok)
	}
	if l, ok := PodLocality(map[string]string{LabelIstioLocality: "r1"}); !ok || l != (Locality{Region: "r1"}) {
		t.Errorf("PodLocality(r1) = %+v, %v", l, ok)
	}
	if _, ok := PodLocality(nil); ok {
		t.Error("PodLocality(nil) ok = true")
	}
}
