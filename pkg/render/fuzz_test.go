package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// FuzzRender drives the CR → render path with fuzzed resources: an Istio,
// optionally followed (after "\n---\n") by a RemoteIstio joined to it. The
// specs bypass the CRD schema, as they would if the schema were looser than
// the code. It must never panic; a bad spec must come back as field errors
// naming a field, and a spec FromIstio/FromRemoteIstio accepts must render.
// Seeds: the golden inputs, the sample, and testdata/fuzz/FuzzRender (attack
// shapes: quoted hubs, dotted names, reserved namespaces, unbounded replicas).
//
// Run it for a bounded time with:
//
//	go test -run '^$' -fuzz '^FuzzRender$' -fuzztime 60s ./pkg/render/
func FuzzRender(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.in.yaml")
	seeds = append(seeds, "../../samples/istio.yaml")
	for _, path := range seeds {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		docs := strings.SplitN(string(in), "\n---\n", 2)
		ist := &v1beta1.Istio{}
		if err := yaml.Unmarshal([]byte(docs[0]), ist); err != nil {
			return
		}
		if ist.Name == "" {
			ist.Name, ist.Namespace = "istio", "istio-system"
		}
		cp, errs := FromIstio(ist)
		if checkFieldErrors(t, errs) {
			return
		}
		if len(docs) == 2 {
			ri := &v1beta1.RemoteIstio{}
			if err := yaml.Unmarshal([]byte(docs[1]), ri); err != nil {
				return
			}
			if ri.Name == "" {
				ri.Name, ri.Namespace = "remote", cp.Namespace
			}
			remote, errs := FromRemoteIstio(ri, cp)
			if checkFieldErrors(t, errs) {
				return
			}
			cp = remote
		}
		if _, err := Render(cp); err != nil {
			t.Fatalf("an accepted spec does not render: %v\nspec: %q", err, in)
		}
	})
}

// checkFieldErrors fails the test unless every error names a field and
// says something; it reports whether there were errors.
func checkFieldErrors(t *testing.T, errs field.ErrorList) bool {
	t.Helper()
	for _, e := range errs {
		if e == nil || e.Field == "" || e.Error() == "" {
			t.Fatalf("not a field error: %#v", e)
		}
	}
	return len(errs) > 0
}
