package localcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KubernetesVersion is the version of the Kubernetes binaries that
// DefaultBinaries looks for in the cache directory.
const KubernetesVersion = "v1.37.2"

// Environment variables that override where DefaultBinaries finds each binary.
const (
	EnvEtcd                  = "MESHFLEET_ETCD"
	EnvKubeAPIServer         = "MESHFLEET_KUBE_APISERVER"
	EnvKubeControllerManager = "MESHFLEET_KUBE_CONTROLLER_MANAGER"
	EnvKubectl               = "MESHFLEET_KUBECTL"
	// Optional: only clusters with ClusterOptions.FakeNodes need them.
	EnvKubeScheduler = "MESHFLEET_KUBE_SCHEDULER"
	EnvKwok          = "MESHFLEET_KWOK"
	EnvKwokConfig    = "MESHFLEET_KWOK_CONFIG"
)

// KwokVersion is the kwok release `make tools` builds into
// $HOME/.cache/meshfleet/kwok-<KwokVersion>, with its stages beside it.
const KwokVersion = "v0.8.0"

// Binaries holds the absolute paths of the control-plane binaries.
type Binaries struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	Kubectl               string
	// KubeScheduler, Kwok and KwokConfig (kwok's stages) are optional:
	// "" if not found; StartCluster needs them only for FakeNodes.
	KubeScheduler string
	Kwok          string
	KwokConfig    string
}

// BinDir returns the directory where `make tools` puts the Kubernetes
// binaries: $HOME/.cache/meshfleet/k8s-<KubernetesVersion>.
func BinDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating the Kubernetes binaries: %w", err)
	}
	return filepath.Join(home, ".cache", "meshfleet", "k8s-"+KubernetesVersion), nil
}

// DefaultBinaries resolves each binary from its environment variable
// (MESHFLEET_ETCD, MESHFLEET_KUBE_APISERVER, MESHFLEET_KUBE_CONTROLLER_MANAGER,
// MESHFLEET_KUBECTL), else from BinDir (etcd: from PATH, then /usr/bin/etcd).
// If any binary is missing it returns an error naming every missing binary and
// how to get it; the Binaries returned alongside still hold what was found.
func DefaultBinaries() (Binaries, error) {
	dir, dirErr := BinDir()
	var b Binaries
	var missing []string
	resolve := func(dst *string, env, name string, fallbacks func() []string) {
		if p := os.Getenv(env); p != "" {
			if err := checkExecutable(p); err != nil {
				missing = append(missing, fmt.Sprintf("%s (from $%s): %v", name, env, err))
				return
			}
			*dst = p
			return
		}
		tried := fallbacks()
		for _, p := range tried {
			if p == "" {
				continue
			}
			if checkExecutable(p) == nil {
				*dst = p
				return
			}
		}
		missing = append(missing, fmt.Sprintf("%s (looked for $%s, %s)", name, env, strings.Join(nonEmpty(tried), ", ")))
	}
	inDir := func(name string) func() []string {
		return func() []string {
			if dirErr != nil {
				return nil
			}
			return []string{filepath.Join(dir, name)}
		}
	}
	resolve(&b.Etcd, EnvEtcd, "etcd", func() []string {
		p, _ := exec.LookPath("etcd")
		if p == "" {
			p = "etcd in PATH"
		}
		return []string{p, "/usr/bin/etcd"}
	})
	resolve(&b.KubeAPIServer, EnvKubeAPIServer, "kube-apiserver", inDir("kube-apiserver"))
	resolve(&b.KubeControllerManager, EnvKubeControllerManager, "kube-controller-manager", inDir("kube-controller-manager"))
	resolve(&b.Kubectl, EnvKubectl, "kubectl", inDir("kubectl"))
	b.KubeScheduler = optional(EnvKubeScheduler, inDir("kube-scheduler")())
	if home, err := os.UserHomeDir(); err == nil {
		kwokDir := filepath.Join(home, ".cache", "meshfleet", "kwok-"+KwokVersion)
		b.Kwok = optional(EnvKwok, []string{filepath.Join(kwokDir, "kwok")})
		b.KwokConfig = optionalFile(EnvKwokConfig, filepath.Join(kwokDir, "stages.yaml"))
	}
	if len(missing) > 0 {
		fix := fmt.Sprintf("run `make tools` (builds the Kubernetes %s binaries into %s and installs etcd)", KubernetesVersion, dir)
		return b, fmt.Errorf("missing control-plane binaries: %s; %s, or point the MESHFLEET_* variables at existing binaries",
			strings.Join(missing, "; "), fix)
	}
	return b, nil
}

// optional returns $env if set, else the first executable of fallbacks,
// else "".
func optional(env string, fallbacks []string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	for _, p := range fallbacks {
		if checkExecutable(p) == nil {
			return p
		}
	}
	return ""
}

// optionalFile returns $env if set, else fallback if it exists, else "".
func optionalFile(env, fallback string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	return ""
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("not found")
		}
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}
