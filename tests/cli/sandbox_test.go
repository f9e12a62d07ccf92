//go:build integration

package cli

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSandbox runs `meshctl sandbox up` as a user would, checks the mesh it
// brings up, stops it with Ctrl-C and checks that no process is left.
func TestSandbox(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "meshctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshfleet/meshfleet/cmd/meshctl").CombinedOutput(); err != nil {
		t.Fatalf("build meshctl: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "sandbox")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "sandbox", "up", "--dir", dir, "--remotes", "2")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Press Ctrl-C") {
				close(up)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-up:
		t.Logf("BENCH meshctl sandbox up (warm binaries): %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("sandbox did not come up:\n%s", log.String())
	}

	status, err := exec.Command(bin, "status", "--kubeconfig", filepath.Join(dir, "primary", "kubeconfig")).CombinedOutput()
	if err != nil {
		t.Errorf("meshctl status on the sandbox: %v\n%s", err, status)
	}
	if n := strings.Count(string(status), "Ready"); n != 3 {
		t.Errorf("want 3 Ready clusters (primary, remote-1, remote-2):\n%s", status)
	}
	for _, want := range []string{"istiod:", "locality server:"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("sandbox output lacks %q:\n%s", want, log.String())
		}
	}
	istiodLog, _ := os.ReadFile(filepath.Join(dir, "istiod", "istiod.log"))
	if !strings.Contains(string(istiodLog), "Started XDS configSource xds://") {
		t.Errorf("istiod did not start the locality server's config source")
	}

	// Ctrl-C stops everything.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sandbox exited with %v:\n%s", err, log.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("sandbox did not stop within a minute of Ctrl-C")
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Errorf("processes left after the sandbox stopped: %v", left)
	}
}

// processesUsing lists the command lines that mention dir.
func processesUsing(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, dir) {
			out = append(out, cmdline)
		}
	}
	return out
}
