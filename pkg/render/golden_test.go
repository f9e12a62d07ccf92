package render

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// TestGolden renders every testdata/<case>.in.yaml (an Istio resource) and
// compares both stages with golden files: <case>.controlplane.yaml (FromIstio)
// and <case>.out.yaml (Render).
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs in testdata: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			cp := readControlPlane(t, in)
			cpYAML, err := yaml.Marshal(cp)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", name+".controlplane.yaml"), cpYAML)

			m, err := Render(cp)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", name+".out.yaml"), manifestYAML(t, m))

			again, err := Render(cp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(manifestYAML(t, m), manifestYAML(t, again)) {
				t.Error("rendering the same ControlPlane twice gave different manifests")
			}
		})
	}
}

// readControlPlane resolves an input file: an Istio resource, or an Istio
// resource and a RemoteIstio joined to it (the remote is rendered).
func readControlPlane(t testing.TB, path string) *ControlPlane {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	ist := &v1beta1.Istio{}
	if err := yaml.UnmarshalStrict([]byte(docs[0]), ist); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cp, errs := FromIstio(ist)
	if len(errs) > 0 {
		t.Fatalf("FromIstio: %v", errs)
	}
	if len(docs) == 1 {
		return cp
	}
	ri := &v1beta1.RemoteIstio{}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), ri); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	remote, errs := FromRemoteIstio(ri, cp)
	if len(errs) > 0 {
		t.Fatalf("FromRemoteIstio: %v", errs)
	}
	return remote
}

// manifestYAML prints a manifest for golden files: CRDs by name only (they
// are Istio's, copied verbatim), every other object in full, except Istio's
// injection templates, which are shown by size and digest.
func manifestYAML(t testing.TB, m *Manifest) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# CRDs\n")
	for _, c := range m.CRDs {
		fmt.Fprintf(&b, "# - %s\n", c.GetName())
	}
	if len(m.NamespaceLabels) > 0 {
		b.WriteString("# namespace labels\n")
		names := make([]string, 0, len(m.NamespaceLabels))
		for n := range m.NamespaceLabels {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "# - %s: %v\n", n, m.NamespaceLabels[n])
		}
	}
	for _, o := range m.Objects {
		o = o.DeepCopy()
		if o.GetKind() == "ConfigMap" && o.GetName() == "istio-sidecar-injector" {
			if cfg, ok, _ := unstructured.NestedString(o.Object, "data", "config"); ok {
				_ = unstructured.SetNestedField(o.Object,
					fmt.Sprintf("<Istio's injection templates: %d bytes, sha256 %x>", len(cfg), sha256.Sum256([]byte(cfg))), "data", "config")
			}
		}
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes()
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make update-golden` to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered output; run `make update-golden` and review the diff.\n%s", path, firstDiff(string(want), string(got)))
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, wl, gl)
		}
	}
	return ""
}
