package locality

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/topology"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from the current output")

// goldenInput is the shape of testdata/*.in.yaml.
type goldenInput struct {
	Policy   Policy            `json:"policy"`
	Topology topology.Topology `json:"topology"`
}

// TestGolden translates each testdata/*.in.yaml and compares the result with
// the matching *.out.yaml (go test ./pkg/locality -update rewrites them).
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs in testdata (%v)", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var gi goldenInput
			if err := yaml.UnmarshalStrict(raw, &gi); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			res, err := Translate(&gi.Topology, gi.Policy)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got, err := yaml.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			outPath := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(outPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/locality -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the output; run go test ./pkg/locality -update and review the diff. Got:\n%s", outPath, got)
			}
		})
	}
}
