package localistiod

import (
	"fmt"
	"strings"
)

// flagName returns the name of a --flag or --flag=value argument.
func flagName(arg string) (string, error) {
	if !strings.HasPrefix(arg, "--") || len(arg) < 3 || arg[2] == '=' {
		return "", fmt.Errorf("argument %q is not of the form --flag=value", arg)
	}
	name, _, _ := strings.Cut(arg[2:], "=")
	return name, nil
}

// mergeArgs returns base followed by extra, dropping the --flag arguments of
// base whose flag extra sets again. Positional arguments of base stay.
func mergeArgs(base, extra []string) []string {
	override := map[string]bool{}
	for _, a := range extra {
		if n, err := flagName(a); err == nil {
			override[n] = true
		}
	}
	out := make([]string, 0, len(base)+len(extra))
	for _, a := range base {
		if n, err := flagName(a); err == nil && override[n] {
			continue
		}
		out = append(out, a)
	}
	return append(out, extra...)
}

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
