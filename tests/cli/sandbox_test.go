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
	"testing"
	"time"
)

// TestSandbox runs `meshctl sandbox up` as a user would, watches the demo's
// traffic fail over and come back, stops it with `meshctl sandbox down` and
// checks that no process is left.
func TestSandbox(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "meshctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshfleet/meshfleet/cmd/meshctl").CombinedOutput(); err != nil {
		t.Fatalf("build meshctl: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "sandbox")
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
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

	for _, want := range []string{"istiod:", "locality server:", "remote-2"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("sandbox output lacks %q:\n%s", want, log.String())
		}
	}
	istiodLog, _ := os.ReadFile(filepath.Join(dir, "istiod", "istiod.log"))
	if strings.Contains(string(istiodLog), "configSource xds://") {
		t.Errorf("istiod was given an xds:// config source; it reads the locality rules from the API server")
	}

	// The demo's traffic stays in its zone; failing the zone moves it to the
	// region's other zone, failing the region to the other region; restoring
	// brings it home.
	sandbox := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"sandbox", "--dir", dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("meshctl sandbox %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	expectAllIn := func(step, zone string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			last = sandbox("status")
			if strings.Contains(last, "client in eu-west-a → "+zone+" 100%") {
				t.Logf("%s: %s", step, lastLine(last))
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("%s: traffic of the eu-west-a client did not all go to %s:\n%s", step, zone, last)
	}
	expectAllIn("healthy", "eu-west-a")
	sandbox("fail-zone", "eu-west-a")
	expectAllIn("zone eu-west-a down", "eu-west-b")
	sandbox("fail-zone", "eu-west")
	expectAllIn("region eu-west down", "us-east-a")
	sandbox("restore", "eu-west")
	expectAllIn("restored", "eu-west-a")
	if out, err := exec.Command(bin, "sandbox", "--dir", dir, "fail-zone", "atlantis").CombinedOutput(); err == nil || !strings.Contains(string(out), "no zone or region") {
		t.Errorf("fail-zone of an unknown zone: %v\n%s", err, out)
	}

	// Each component killed and restarted in turn: status shows it stopped,
	// the traffic line holds in its zone, and restart brings it back.
	for _, comp := range []string{"locality", "tunnel-server", "agent/remote-1", "istiod", "apiserver/remote-1", "etcd/remote-2", "operator"} {
		killed := strings.TrimPrefix(strings.TrimSpace(sandbox("kill", comp)), "killed ")
		if st := sandbox("status"); !componentState(st, killed, "false") {
			t.Errorf("after kill %s, status does not show %s stopped:\n%s", comp, killed, st)
		}
		expectAllIn(comp+" killed", "eu-west-a")
		if out := sandbox("restart", comp); !strings.Contains(out, killed) {
			t.Errorf("restart %s: %q does not name %s", comp, out, killed)
		}
		if st := sandbox("status"); !componentState(st, killed, "true") {
			t.Errorf("after restart %s, status does not show %s running:\n%s", comp, killed, st)
		}
		expectAllIn(comp+" restarted", "eu-west-a")
	}
	if out, err := exec.Command(bin, "sandbox", "--dir", dir, "kill", "etcd/atlantis").CombinedOutput(); err == nil || !strings.Contains(string(out), "no component") {
		t.Errorf("kill of an unknown component: %v\n%s", err, out)
	}

	// meshctl sandbox down stops everything.
	sandbox("down")
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

// componentState reports whether status lists component with RUNNING state.
func componentState(status, component, state string) bool {
	for _, l := range strings.Split(status, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == component && f[1] == state {
			return true
		}
	}
	return false
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
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
