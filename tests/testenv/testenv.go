// Package testenv starts real etcd and kube-apiserver processes (and, on
// request, kube-controller-manager) for integration and e2e tests, using
// internal/localcluster: one etcd shared by any number of clusters, each cluster
// an apiserver with its own etcd prefix and port on 127.0.0.1.
//
// In a single test:
//
//	env := testenv.Start(t,
//		localcluster.ClusterOptions{Name: "primary", ControllerManager: true},
//		localcluster.ClusterOptions{Name: "remote1"},
//	)
//	client := kubernetes.NewForConfigOrDie(env.Cluster("primary").Config)
//
// Shared by a whole package, from TestMain:
//
//	func TestMain(m *testing.M) {
//		env, stop, err := testenv.StartShared(context.Background(), "", opts...)
//		if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//		code := m.Run()
//		stop()
//		os.Exit(code)
//	}
//
// Missing binaries fail the test (they are not skipped) with the fix:
// run `make tools`.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/localcluster"
)

// KeepDirEnv names an environment variable: when it is set to a non-empty
// value, Start keeps the environment's directory (certificates, kubeconfigs,
// logs) after the test instead of deleting it, and logs where it is.
const KeepDirEnv = "MESHFLEET_TESTENV_KEEP"

// Env is a running etcd and the clusters that share it.
type Env struct {
	// Etcd is the etcd every cluster stores its data in.
	Etcd *localcluster.Etcd
	// Clusters are the running clusters by name.
	Clusters map[string]*localcluster.Cluster
	// Bins are the binaries the environment runs.
	Bins localcluster.Binaries
	// Dir holds etcd's data and each cluster's directory (Dir/<name>).
	Dir string

	stopOnce sync.Once
	stopErr  error
}

// Start starts one etcd and one cluster per option (a single cluster named
// "primary" if none is given) and registers a t.Cleanup that stops them all.
// Options with an empty Dir get Dir/<Name>. Any failure, including missing
// binaries, calls t.Fatal with the reason and the fix.
func Start(t testing.TB, opts ...localcluster.ClusterOptions) *Env {
	t.Helper()
	var dir string
	if os.Getenv(KeepDirEnv) != "" {
		d, err := os.MkdirTemp("", "meshfleet-testenv-")
		if err != nil {
			t.Fatalf("testenv: creating directory: %v", err)
		}
		dir = d
		t.Logf("testenv: keeping %s (%s is set)", dir, KeepDirEnv)
	} else {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := start(ctx, dir, opts)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if t.Failed() {
			env.logTails(t)
		}
		if err := env.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return env
}

// StartShared starts one etcd and one cluster per option (a single cluster
// named "primary" if none is given) for use across tests, for example from
// TestMain. dir holds everything; if it is empty a temporary directory is
// created, and removed by the returned stop function. stop stops every
// process and never fails; the first error it met is also returned by
// Env.Stop.
func StartShared(ctx context.Context, dir string, opts ...localcluster.ClusterOptions) (*Env, func(), error) {
	removeDir := false
	if dir == "" {
		d, err := os.MkdirTemp("", "meshfleet-testenv-")
		if err != nil {
			return nil, nil, fmt.Errorf("creating test environment directory: %w", err)
		}
		dir, removeDir = d, os.Getenv(KeepDirEnv) == ""
	}
	env, err := start(ctx, dir, opts)
	if err != nil {
		if removeDir {
			os.RemoveAll(dir)
		}
		return nil, nil, err
	}
	stop := func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		}
		if removeDir {
			os.RemoveAll(dir)
		}
	}
	return env, stop, nil
}

func start(ctx context.Context, dir string, opts []localcluster.ClusterOptions) (*Env, error) {
	if len(opts) == 0 {
		opts = []localcluster.ClusterOptions{{Name: "primary"}}
	}
	seen := map[string]bool{}
	for i := range opts {
		if seen[opts[i].Name] {
			return nil, fmt.Errorf("cluster %q given twice", opts[i].Name)
		}
		seen[opts[i].Name] = true
		if opts[i].Dir == "" {
			opts[i].Dir = filepath.Join(dir, opts[i].Name)
		}
	}
	bins, err := localcluster.DefaultBinaries()
	if err != nil {
		return nil, err
	}
	etcd, err := localcluster.StartEtcd(ctx, dir, bins.Etcd)
	if err != nil {
		return nil, err
	}
	env := &Env{Etcd: etcd, Clusters: map[string]*localcluster.Cluster{}, Bins: bins, Dir: dir}

	// Start the apiservers concurrently: most of their start-up is waiting.
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, o := range opts {
		wg.Go(func() {
			c, err := localcluster.StartCluster(ctx, etcd, bins, o)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			env.Clusters[o.Name] = c
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		_ = env.Stop()
		return nil, errors.Join(errs...)
	}
	return env, nil
}

// Cluster returns the cluster called name. It panics if there is none, which
// is a bug in the test.
func (e *Env) Cluster(name string) *localcluster.Cluster {
	c, ok := e.Clusters[name]
	if !ok {
		panic(fmt.Sprintf("testenv: no cluster %q (have %v)", name, e.names()))
	}
	return c
}

func (e *Env) names() []string {
	names := make([]string, 0, len(e.Clusters))
	for n := range e.Clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Kubectl runs the real kubectl binary against cluster's admin kubeconfig
// with args, returning its combined output and, if it fails, an error that
// includes the command line.
func (e *Env) Kubectl(ctx context.Context, cluster string, args ...string) (string, error) {
	c, ok := e.Clusters[cluster]
	if !ok {
		return "", fmt.Errorf("kubectl: no cluster %q (have %v)", cluster, e.names())
	}
	full := append([]string{
		"--kubeconfig=" + c.Kubeconfig,
		// Keep kubectl's discovery cache with the cluster, not in ~/.kube,
		// where a later cluster on the same port would find it stale.
		"--cache-dir=" + filepath.Join(c.Dir, "kubectl-cache"),
	}, args...)
	cmd := exec.CommandContext(ctx, e.Bins.Kubectl, full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %q on cluster %q: %w: %s", args, cluster, err, out)
	}
	return string(out), nil
}

// Stop stops every cluster, then etcd. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
		)
		for _, c := range e.Clusters {
			wg.Go(func() {
				if err := c.Stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := e.Etcd.Stop(); err != nil {
			errs = append(errs, err)
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// logTails logs the end of each process log, to explain a failed test.
func (e *Env) logTails(t testing.TB) {
	t.Helper()
	logs := []string{e.Etcd.LogPath}
	for _, n := range e.names() {
		c := e.Clusters[n]
		logs = append(logs, c.APIServerLog)
		for _, l := range []string{c.ControllerManagerLog, c.SchedulerLog, c.KwokLog} {
			if l != "" {
				logs = append(logs, l)
			}
		}
	}
	for _, p := range logs {
		t.Logf("testenv: last lines of %s:\n%s", p, tail(p, 20))
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	end := len(b)
	for end > 0 && b[end-1] == '\n' {
		end--
	}
	start := end
	for lines := 0; start > 0; start-- {
		if b[start-1] == '\n' {
			lines++
			if lines == n {
				break
			}
		}
	}
	return string(b[start:end])
}

// Eventually calls f until it returns nil, and fails the test with what and
// f's last error if that has not happened within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if busy := reconciling(allStacks()); busy != "" {
				t.Logf("reconciles still running in this process when the wait for %s gave up:\n%s", what, busy)
			}
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// allStacks is the stack of every goroutine of the process.
func allStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// maxReconcileStacks bounds what reconciling reports.
const maxReconcileStacks = 8

// reconciling picks, from a dump of every goroutine, those inside a
// controller-runtime reconcile (an idle worker waits in its queue instead),
// at most maxReconcileStacks of them. A wait that gives up on an operator
// running in the test's process then shows where a reconcile that never
// returned is blocked, which its log cannot (ARCHITECTURE decision 78: a
// worker stuck past the manager's shutdown grace once failed a -p 2
// integration run).
func reconciling(stacks string) string {
	var out []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "controller-runtime/pkg/internal/controller.(*Controller[...]).reconcileHandler") {
			out = append(out, g)
		}
	}
	if len(out) > maxReconcileStacks {
		out = append(out[:maxReconcileStacks], fmt.Sprintf("(%d more)", len(out)-maxReconcileStacks))
	}
	return strings.Join(out, "\n\n")
}

// Context is the context of what a test starts that must outlive
// t.Context(), which ends before the test's cleanups run: it carries
// t.Context()'s values, and a cleanup registered now cancels it, so it ends
// after every cleanup registered later (the stop of what it started).
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	t.Cleanup(cancel)
	return ctx
}
