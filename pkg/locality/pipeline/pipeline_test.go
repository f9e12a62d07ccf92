package pipeline

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// Bad options are refused with the problem and the fix, in the library's
// words (no command-line flag names: the sandbox and tests call it too).
func TestNewRefusesBadOptions(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no members", Options{}, "give exactly one"},
		{"both kinds of members", Options{Mesh: cfg, Clusters: map[string]*rest.Config{"a": cfg}}, "give exactly one"},
		{"primary not a member", Options{Clusters: map[string]*rest.Config{"a": cfg, "b": cfg}, PrimaryCluster: "c"}, `primary cluster "c" is not one of the member clusters (a, b)`},
		{"two members, no primary", Options{Clusters: map[string]*rest.Config{"a": cfg, "b": cfg}}, `primary cluster "" is not one of the member clusters`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "--") {
				t.Errorf("error names a flag: %v", err)
			}
		})
	}
	s, err := New(Options{Clusters: map[string]*rest.Config{"only": cfg}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Primary() != cfg || s.Watcher() == nil {
		t.Errorf("one static member: primary %v, watcher %v; want that member and a watcher", s.Primary(), s.Watcher())
	}
}
