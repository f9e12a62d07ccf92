package localistiod

import (
	"strings"
)

// mergeEnv returns base with the KEY=VALUE entries of extra replacing those
// of base with the same key, and the others appended.
func mergeEnv(base, extra []string) []string {
	keys := map[string]bool{}
	for _, e := range extra {
		k, _, _ := strings.Cut(e, "=")
		keys[k] = true
	}
	var out []string
	for _, e := range base {
		if k, _, _ := strings.Cut(e, "="); !keys[k] {
			out = append(out, e)
		}
	}
	return append(out, extra...)
}
