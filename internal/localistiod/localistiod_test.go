package localistiod

import (
	"github.com/meshfleet/meshfleet/internal/localproc"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/manifests"
)

func TestMergeArgs(t *testing.T) {
	base := []string{"discovery", "--a=1", "--b=2", "--httpsAddr="}
	got := localproc.MergeArgs(base, []string{"--b=3", "--httpsAddr=127.0.0.1:1"})
	want := []string{"discovery", "--a=1", "--b=3", "--httpsAddr=127.0.0.1:1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeArgs = %q, want %q", got, want)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2"}, []string{"B=", "C=3"})
	want := []string{"A=1", "B=", "C=3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no kubeconfig", Options{Dir: "d"}, "no Kubeconfig"},
		{"no dir", Options{Kubeconfig: "k"}, "no Dir"},
		{"bad arg", Options{Kubeconfig: "k", Dir: "d", Args: []string{"-x"}}, `"-x" is not of the form --flag=value`},
		{"bad env", Options{Kubeconfig: "k", Dir: "d", Env: []string{"NOVALUE"}}, `"NOVALUE" is not of the form KEY=VALUE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.opts.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("withDefaults() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	o, err := Options{Kubeconfig: "k", Dir: "d", Binary: "/bin/true"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.ClusterID != "Kubernetes" || o.Namespace != "istio-system" || o.StartTimeout != DefaultStartTimeout {
		t.Errorf("defaults: %+v", o)
	}
}

func TestDefaultBinary(t *testing.T) {
	t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "missing"))
	if _, err := DefaultBinary(); err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("missing binary: %v, want the fix named", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBinary, exe)
	if got, err := DefaultBinary(); err != nil || got != exe {
		t.Errorf("DefaultBinary() = %q, %v; want %q", got, err, exe)
	}
	if got := shortVersion(ModuleVersion); got != "eed52ebb66ad" {
		t.Errorf("shortVersion = %q", got)
	}
}

func TestDecodeEmbeddedCRDs(t *testing.T) {
	data, err := manifests.Charts.ReadFile(CRDFile)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := decodeCRDs(data)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, c := range crds {
		names[c.GetName()] = true
	}
	for _, n := range []string{"destinationrules.networking.istio.io", "serviceentries.networking.istio.io", "peerauthentications.security.istio.io"} {
		if !names[n] {
			t.Errorf("CRD %s missing from %s (have %d CRDs)", n, CRDFile, len(crds))
		}
	}
}

func TestDecodeRejectsOtherKinds(t *testing.T) {
	_, err := decodeCRDs([]byte("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"))
	if err == nil || !strings.Contains(err.Error(), `ConfigMap "x", not a CustomResourceDefinition`) {
		t.Errorf("decodeCRDs(ConfigMap) error = %v", err)
	}
}
