package version

import "testing"

func TestImageDefault(t *testing.T) {
	if got, want := Image(), "ghcr.io/meshfleet/meshfleet:v0.0.0-dev"; got != want {
		t.Fatalf("Image() = %q, want %q", got, want)
	}
}

func TestTagOf(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":              "v1.2.3",
		"v1.2.3-4-gabc-dirty": "v1.2.3-4-gabc-dirty",
		"v1.2.3+build.5":      "v1.2.3_build.5",
		"-x":                  "x",
		"":                    "latest",
		"feature/branch":      "feature_branch",
	} {
		if got := TagOf(in); got != want {
			t.Errorf("TagOf(%q) = %q, want %q", in, got, want)
		}
	}
}
