package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/meshfleet/meshfleet/pkg/version"
)

// Where things are in the image.
const (
	// Entrypoint is meshfleet's binary; the image's entrypoint.
	Entrypoint = "/usr/local/bin/meshfleet"
	// CACertsPath holds the CA bundle (Go's crypto/x509 looks there on Linux).
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// NonRoot is the user and group id the image runs as.
	NonRoot = 65532
)

// Options say what to build.
type Options struct {
	// ModuleDir is the meshfleet module's root (holds go.mod).
	ModuleDir string
	// Package is the main package built into the image.
	Package string
	// Version, Repository and Revision are stamped into pkg/version and the
	// image's labels; the tag is version.TagOf(Version).
	Version, Repository, Revision string
	// Source is the org.opencontainers.image.source label.
	Source string
	// Platforms are os/arch pairs, e.g. linux/amd64.
	Platforms []v1.Platform
	// CACerts is the host's CA bundle copied into the image.
	CACerts string
	// WorkDir holds the compiled binaries.
	WorkDir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Built is one platform's image.
type Built struct {
	Platform v1.Platform
	Image    v1.Image
}

// Build cross-compiles Package for every platform (CGO_ENABLED=0, the
// version stamped by -ldflags) and assembles one image per platform on an
// empty base: a layer with the CA bundle and the non-root user, and a layer
// with the binary. It returns the images and the multi-platform index.
func Build(ctx context.Context, o Options) (v1.ImageIndex, []Built, error) {
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA bundle for the image: %w (install Debian's ca-certificates)", err)
	}
	base, err := layerOf(baseFiles(ca))
	if err != nil {
		return nil, nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var built []Built
	for _, p := range o.Platforms {
		bin := filepath.Join(o.WorkDir, fmt.Sprintf("meshfleet-%s-%s", p.OS, p.Architecture))
		if err := compile(ctx, o, p, bin); err != nil {
			return nil, nil, err
		}
		img, err := imageOf(o, p, base, bin)
		if err != nil {
			return nil, nil, fmt.Errorf("assembling the %s image: %w", platformString(p), err)
		}
		built = append(built, Built{Platform: p, Image: img})
		pp := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pp}})
	}
	return idx, built, nil
}

// LDFlags stamp pkg/version and strip debug information.
func LDFlags(o Options) string {
	pkg := "github.com/meshfleet/meshfleet/pkg/version"
	return strings.Join([]string{"-s", "-w",
		"-X", pkg + ".version=" + o.Version,
		"-X", pkg + ".repository=" + o.Repository,
		"-X", pkg + ".revision=" + o.Revision}, " ")
}

func compile(ctx context.Context, o Options, p v1.Platform, out string) error {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "building %s for %s\n", o.Package, platformString(p))
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", LDFlags(o), "-o", out, o.Package)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Variant != "" && p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", o.Package, platformString(p), err, b)
	}
	return nil
}

func imageOf(o Options, p v1.Platform, base v1.Layer, bin string) (v1.Image, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	app, err := layerOf([]file{
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(Entrypoint, "/"), mode: 0o755, data: b},
	})
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{CreatedBy: "meshfleet imagebuild: CA certificates, user nonroot (65532)"}},
		mutate.Addendum{Layer: app, History: v1.History{CreatedBy: "meshfleet imagebuild: " + o.Package + " " + o.Version}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	user := fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config = v1.Config{
		Entrypoint: []string{Entrypoint},
		User:       user,
		WorkingDir: "/home/nonroot",
		Env:        []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + CACertsPath},
		Labels:     Labels(o),
	}
	return mutate.ConfigFile(img, cf)
}

// Labels are the OCI annotations-as-labels of every image.
func Labels(o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":   "meshfleet",
		"org.opencontainers.image.version": o.Version,
		"org.opencontainers.image.source":  o.Source,
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}

// Tag is the images' tag: the build version.
func Tag(o Options) string { return version.TagOf(o.Version) }

type file struct {
	name string
	mode int64
	dir  bool
	data []byte
	uid  int
}

func baseFiles(ca []byte) []file {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot)
	return []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(CACertsPath, "/"), mode: 0o644, data: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: NonRoot},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
}

// layerOf makes a reproducible layer (fixed times, ordered entries).
func layerOf(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", path.Clean(f.name), err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// ParsePlatforms reads "linux/amd64,linux/arm64".
func ParsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range strings.Split(s, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(f))
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("platform %q is not os/arch[/variant], e.g. linux/amd64", f)
		}
		out = append(out, *p)
	}
	return out, nil
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Sizes are an image's compressed (what a registry stores and a node
// pulls) and uncompressed layer bytes.
func Sizes(img v1.Image) (compressed, uncompressed int64, err error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range layers {
		c, err := l.Size()
		if err != nil {
			return 0, 0, err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return 0, 0, err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return 0, 0, err
		}
		compressed += c
		uncompressed += n
	}
	return compressed, uncompressed, nil
}
