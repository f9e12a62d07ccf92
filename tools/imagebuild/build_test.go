package main

import (
	"archive/tar"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testOptions builds pkg (relative to the module root) for platforms.
func testOptions(t *testing.T, pkg string, platforms ...v1.Platform) Options {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		ModuleDir: root, Package: pkg, Version: "v1.2.3-test+meta", Repository: "registry.test/meshfleet/meshfleet",
		Revision: "0123abcd", Source: "https://github.com/meshfleet/meshfleet", Platforms: platforms,
		CACerts: "/etc/ssl/certs/ca-certificates.crt", WorkDir: t.TempDir(),
	}
}

// filesOf reads an image's flattened filesystem.
func filesOf(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// TestBuildPushPull builds a two-platform image of a small program, checks
// its configuration and filesystem, writes the OCI layout and reads it back,
// and pushes it to a registry (go-containerregistry's, over HTTP) and pulls
// it by tag.
func TestBuildPushPull(t *testing.T) {
	o := testOptions(t, "./tools/imagebuild/testdata/hello",
		v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"})
	idx, built, err := Build(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if Tag(o) != "v1.2.3-test_meta" {
		t.Fatalf("tag %q", Tag(o))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.Architecture != "amd64" || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("index manifests: %+v", im.Manifests)
	}
	for _, b := range built {
		cf, err := b.Image.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != b.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, platformString(b.Platform))
		}
		if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != Entrypoint {
			t.Errorf("user %q entrypoint %q", cf.Config.User, cf.Config.Entrypoint)
		}
		for k, v := range map[string]string{"org.opencontainers.image.version": o.Version, "org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.source": o.Source} {
			if cf.Config.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
			}
		}
		files := filesOf(t, b.Image)
		for _, f := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "usr/local/bin/meshfleet", "tmp"} {
			if files[f] == nil {
				t.Errorf("%s: no %s in the image", platformString(b.Platform), f)
			}
		}
		if h := files["usr/local/bin/meshfleet"]; h != nil && h.Mode&0o111 == 0 {
			t.Errorf("binary mode %o", h.Mode)
		}
		if h := files["home/nonroot"]; h == nil || h.Uid != NonRoot {
			t.Errorf("home/nonroot: %+v", h)
		}
	}

	ref, err := name.NewTag(o.Repository + ":" + Tag(o))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	if err := WriteLayout(dir, idx, ref); err != nil {
		t.Fatal(err)
	}
	lidx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	lm, _ := lidx.IndexManifest()
	want, _ := idx.Digest()
	if len(lm.Manifests) != 1 || lm.Manifests[0].Digest != want || lm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != Tag(o) {
		t.Fatalf("layout index.json: %+v, want one entry %s tagged %s", lm.Manifests, want, Tag(o))
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	pushed, err := name.NewTag(u.Host+"/meshfleet/meshfleet:"+Tag(o), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(pushed, idx); err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(pushed)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pulled.Digest(); d != want {
		t.Fatalf("pulled %s, pushed %s", d, want)
	}

	// The host's image runs and prints the stamped identity.
	for _, b := range built {
		if b.Platform.Architecture != runtime.GOARCH {
			continue
		}
		root := extract(t, b.Image)
		out, err := exec.Command(filepath.Join(root, Entrypoint)).CombinedOutput()
		if err != nil {
			t.Fatalf("running the image's binary: %v\n%s", err, out)
		}
		if want := "registry.test/meshfleet/meshfleet:v1.2.3-test_meta"; !strings.Contains(string(out), want) {
			t.Fatalf("binary says %q, want the image %s", out, want)
		}
	}
}

// extract unpacks img's filesystem into a temporary directory (regular
// files and directories; the images have nothing else).
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			t.Fatalf("entry %s leaves the root", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
	}
}
