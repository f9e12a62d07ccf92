// Command imagebuild builds meshfleet's OCI images without a container
// runtime (`make images`): it cross-compiles cmd/meshfleet for each platform
// with CGO_ENABLED=0 and the build version stamped into pkg/version, puts
// each binary on an empty (scratch) base with the host's CA bundle and a
// non-root user (65532), and writes a multi-platform OCI image layout plus
// one `docker load`-able tarball per platform, and the Helm chart packaged
// with the same version and repository. With --push it also pushes
// the index to <repository>:<version> with the local registry credentials
// (~/.docker/config.json).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/meshfleet/meshfleet/pkg/chart"
	"github.com/meshfleet/meshfleet/pkg/version"
)

func main() {
	o := Options{Package: "./cmd/meshfleet", Log: os.Stderr}
	var platforms, out string
	var push, insecure bool
	flag.StringVar(&o.ModuleDir, "module-dir", ".", "the meshfleet module's root")
	// Defaults: this tool's own pkg/version, which `make images` stamps
	// with the same -ldflags as the images' binary.
	flag.StringVar(&o.Version, "version", version.Version(), "build version: stamped into pkg/version, the images' tag and label")
	flag.StringVar(&o.Repository, "repository", version.Repository(), "image repository the build is for (stamped into pkg/version)")
	flag.StringVar(&o.Revision, "revision", version.Revision(), "VCS commit (label org.opencontainers.image.revision)")
	flag.StringVar(&o.Source, "source", "https://github.com/meshfleet/meshfleet", "label org.opencontainers.image.source")
	flag.StringVar(&o.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied into the images")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	flag.StringVar(&out, "out", "bin/images", "output directory (OCI layout in oci/, one tarball per platform)")
	flag.BoolVar(&push, "push", false, "also push the multi-platform index to <repository>:<tag>")
	flag.BoolVar(&insecure, "insecure", false, "with --push: allow a plain-HTTP registry")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, platforms, out, push, insecure); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o Options, platforms, out string, push, insecure bool) error {
	var err error
	if o.Platforms, err = ParsePlatforms(platforms); err != nil {
		return err
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.NewTag(o.Repository+":"+Tag(o), opts...)
	if err != nil {
		return fmt.Errorf("image reference %s:%s: %w", o.Repository, Tag(o), err)
	}
	if o.WorkDir, err = os.MkdirTemp("", "meshfleet-imagebuild-"); err != nil {
		return err
	}
	defer os.RemoveAll(o.WorkDir)
	idx, built, err := Build(ctx, o)
	if err != nil {
		return err
	}
	if err := WriteLayout(filepath.Join(out, "oci"), idx, ref); err != nil {
		return err
	}
	for _, b := range built {
		f := filepath.Join(out, fmt.Sprintf("meshfleet-%s-%s-%s.tar", Tag(o), b.Platform.OS, b.Platform.Architecture))
		if err := tarball.WriteToFile(f, ref, b.Image); err != nil {
			return fmt.Errorf("writing %s: %w", f, err)
		}
		c, u, err := Sizes(b.Image)
		if err != nil {
			return err
		}
		d, _ := b.Image.Digest()
		fmt.Printf("%s %s %s: %.1f MiB compressed, %.1f MiB uncompressed (%s)\n", ref, platformString(b.Platform), d, mib(c), mib(u), f)
	}
	d, _ := idx.Digest()
	fmt.Printf("%s index %s: OCI layout %s\n", ref, d, filepath.Join(out, "oci"))
	if o.Version == version.Version() && o.Repository == version.Repository() {
		// The chart is stamped from this process's pkg/version: only
		// when that is the build the images are of.
		p, err := chart.Package(out)
		if err != nil {
			return err
		}
		fmt.Printf("chart %s (image %s)\n", p, ref)
	} else {
		fmt.Printf("no chart: --version/--repository differ from this tool's own stamp (run it through make images)\n")
	}
	if push {
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Printf("pushed %s@%s\n", ref, d)
	}
	return nil
}

// WriteLayout replaces dir with an OCI image layout holding idx, annotated
// with ref's tag (org.opencontainers.image.ref.name).
func WriteLayout(dir string, idx v1.ImageIndex, ref name.Tag) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.TagStr(),
	})); err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
