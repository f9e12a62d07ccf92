//go:build integration

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestImageRunsOperator builds meshfleet's image for this machine's
// platform exactly as `make images` does, unpacks its filesystem and runs
// its entrypoint: --help, --version (the tag is the build version) and
// `operator` against a real kube-apiserver until it reports ready.
func TestImageRunsOperator(t *testing.T) {
	o := testOptions(t, "./cmd/meshfleet", v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
	_, built, err := Build(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	c, u, err := Sizes(built[0].Image)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image linux/%s: %.1f MiB compressed, %.1f MiB uncompressed", runtime.GOARCH, mib(c), mib(u))
	bin := filepath.Join(extract(t, built[0].Image), Entrypoint)

	if out, err := exec.Command(bin, "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "operator") {
		t.Fatalf("meshfleet --help: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if want := o.Repository + ":" + Tag(o); err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("meshfleet --version: %v: %q, want the image %s", err, out, want)
	}

	env := testenv.Start(t)
	primary := env.Cluster("primary")
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := client.New(primary.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, kc, crds); err != nil {
		t.Fatal(err)
	}
	health := freeAddr(t)
	op := exec.CommandContext(ctx, bin, "operator", "--kubeconfig", primary.Kubeconfig, "--metrics-addr=0", "--health-addr="+health)
	var logs strings.Builder
	op.Stdout, op.Stderr = &logs, &logs
	if err := op.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = op.Wait()
		if t.Failed() {
			t.Logf("operator output:\n%s", logs.String())
		}
	}()
	testenv.Eventually(t, 90*time.Second, "the image's operator is ready", func() error {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
