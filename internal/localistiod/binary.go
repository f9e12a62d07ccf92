package localistiod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ModuleVersion is the istio.io/istio module version that `make tools` builds
// pilot-discovery from (see tests/tools/istio/go.mod).
const ModuleVersion = "v0.0.0-20260827124520-eed52ebb66ad"

// EnvBinary names the environment variable that overrides where
// DefaultBinary finds pilot-discovery. The Makefile exports it.
const EnvBinary = "MESHFLEET_PILOT_DISCOVERY"

// DefaultBinary returns $MESHFLEET_PILOT_DISCOVERY, else
// $HOME/.cache/meshfleet/istio-<commit>/pilot-discovery where `make tools`
// puts it. It fails, naming the fix, if the file is not an executable.
func DefaultBinary() (string, error) {
	p := os.Getenv(EnvBinary)
	if p == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locating pilot-discovery: %w", err)
		}
		p = filepath.Join(home, ".cache", "meshfleet", "istio-"+shortVersion(ModuleVersion), "pilot-discovery")
	}
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("pilot-discovery not found at %s: run `make tools`, or set $%s to an istiod binary", p, EnvBinary)
	case err != nil:
		return "", fmt.Errorf("locating pilot-discovery: %w", err)
	case st.IsDir() || st.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("pilot-discovery at %s is not an executable file: run `make tools`, or set $%s", p, EnvBinary)
	}
	return p, nil
}

// shortVersion returns the part of a module pseudo-version after its last
// '-' (the commit hash), as the Makefile names the cache directory.
func shortVersion(v string) string {
	for i := len(v) - 1; i >= 0; i-- {
		if v[i] == '-' {
			return v[i+1:]
		}
	}
	return v
}
