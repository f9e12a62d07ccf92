// Package version is meshfleet's build identity and the one place the image
// reference of every rendered meshfleet workload (operator, tunnel server,
// agent, locality server) comes from. `make build` and `make images` stamp
// it with -ldflags:
//
//	-X github.com/meshfleet/meshfleet/pkg/version.version=v1.2.3
//	-X github.com/meshfleet/meshfleet/pkg/version.repository=registry.example.com/meshfleet
//	-X github.com/meshfleet/meshfleet/pkg/version.revision=<git commit>
package version

import (
	"fmt"
	"strings"
)

// Defaults of a plain `go build` / `go test` (no -ldflags): stable, so
// golden files do not depend on the commit.
const (
	DefaultRepository = "ghcr.io/meshfleet/meshfleet"
	DefaultVersion    = "v0.0.0-dev"
)

// Set by -ldflags -X; read through the functions below.
var (
	version    = DefaultVersion
	repository = DefaultRepository
	revision   = ""
)

// Version is the build version, also the image tag.
func Version() string { return version }

// Repository is the image repository the build was made for (no tag).
func Repository() string { return repository }

// Revision is the VCS commit of the build, or "" when not stamped.
func Revision() string { return revision }

// Image is the reference of meshfleet's image of this build,
// repository:version. Every manifest that runs meshfleet uses it unless the
// user overrides the image.
func Image() string { return repository + ":" + TagOf(version) }

// TagOf turns a version into a valid image tag: at most 128 characters of
// [A-Za-z0-9_.-], not starting with '.' or '-' ('+' of semver build metadata
// becomes '_').
func TagOf(v string) string {
	t := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '_'
	}, v)
	t = strings.TrimLeft(t, ".-")
	if t == "" {
		t = "latest"
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// String describes the build for --version output.
func String() string {
	s := fmt.Sprintf("meshfleet %s (image %s", version, Image())
	if revision != "" {
		s += ", revision " + revision
	}
	return s + ")"
}
