//go:build integration

package testenv_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

func TestTwoClustersOnOneEtcd(t *testing.T) {
	started := time.Now()
	env := testenv.Start(t,
		localcluster.ClusterOptions{Name: "primary", ControllerManager: true, AuditLog: true},
		localcluster.ClusterOptions{Name: "remote1"},
	)
	t.Logf("etcd + 2 apiservers + 1 controller-manager ready in %v", time.Since(started).Round(100*time.Millisecond))
	ctx := t.Context()

	primary := kubernetes.NewForConfigOrDie(env.Cluster("primary").Config)
	remote1 := kubernetes.NewForConfigOrDie(env.Cluster("remote1").Config)

	t.Run("etcd prefix isolates clusters", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-in-primary"}}
		if _, err := primary.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating namespace in primary: %v", err)
		}
		if _, err := primary.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); err != nil {
			t.Fatalf("namespace not readable in primary: %v", err)
		}
		_, err := remote1.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("namespace of primary in remote1: err = %v, want NotFound", err)
		}
		if env.Cluster("primary").URL == env.Cluster("remote1").URL {
			t.Fatal("both clusters have the same URL")
		}
	})

	t.Run("real kubectl", func(t *testing.T) {
		out, err := env.Kubectl(ctx, "primary", "get", "ns", "-o", "name")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"namespace/default", "namespace/kube-system", "namespace/only-in-primary"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl get ns on primary lacks %s:\n%s", want, out)
			}
		}
		out, err = env.Kubectl(ctx, "remote1", "get", "ns")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "only-in-primary") || !strings.Contains(out, "default") {
			t.Errorf("kubectl get ns on remote1:\n%s", out)
		}
		if _, err := env.Kubectl(ctx, "nope", "get", "ns"); err == nil {
			t.Error("kubectl against an unknown cluster succeeded")
		}
	})

	t.Run("binaries report their version", func(t *testing.T) {
		// Binaries built without the version ldflags report v0.0.0-master,
		// which breaks `kubectl version` and server version checks.
		v, err := remote1.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != localcluster.KubernetesVersion {
			t.Errorf("kube-apiserver reports %q, want %q", v.GitVersion, localcluster.KubernetesVersion)
		}
		if _, err := env.Kubectl(ctx, "remote1", "version"); err != nil {
			t.Error(err)
		}
	})

	t.Run("RBAC forbids an unprivileged user", func(t *testing.T) {
		cfg, err := env.Cluster("primary").UserConfig("alice", "developers")
		if err != nil {
			t.Fatal(err)
		}
		alice := kubernetes.NewForConfigOrDie(cfg)
		_, err = alice.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("alice listing secrets: err = %v, want Forbidden", err)
		}
		if !strings.Contains(err.Error(), `"alice"`) {
			t.Errorf("Forbidden error does not name alice: %v", err)
		}
		if _, err := primary.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("admin listing secrets: %v", err)
		}
	})

	t.Run("controller-manager creates default ServiceAccount", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fresh"}}
		if _, err := primary.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := primary.CoreV1().ServiceAccounts("fresh").Get(ctx, "default", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("ServiceAccount fresh/default: %v", err)
		}
		t.Logf("ServiceAccount fresh/default appeared after %v", time.Since(start).Round(10*time.Millisecond))
		// remote1 has no controller-manager.
		if _, err := remote1.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if _, err := remote1.CoreV1().ServiceAccounts("fresh").Get(ctx, "default", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("remote1 (no controller-manager) ServiceAccount fresh/default: err = %v, want NotFound", err)
		}
	})

	t.Run("audit log", func(t *testing.T) {
		c := env.Cluster("primary")
		if c.AuditLogPath == "" || env.Cluster("remote1").AuditLogPath != "" {
			t.Fatalf("AuditLogPath primary=%q remote1=%q", c.AuditLogPath, env.Cluster("remote1").AuditLogPath)
		}
		b, err := os.ReadFile(c.AuditLogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"only-in-primary"`)) || !bytes.Contains(b, []byte(`"level":"Metadata"`)) {
			t.Errorf("audit log lacks the namespace creation at Metadata level (%d bytes)", len(b))
		}
	})

	t.Run("bad apiserver flag fails fast with the log", func(t *testing.T) {
		start := time.Now()
		_, err := localcluster.StartCluster(ctx, env.Etcd, env.Bins, localcluster.ClusterOptions{
			Name:               "broken",
			Dir:                filepath.Join(env.Dir, "broken"),
			ExtraAPIServerArgs: []string{"--no-such-flag=1"},
		})
		if err == nil {
			t.Fatal("StartCluster with an unknown flag succeeded")
		}
		if !strings.Contains(err.Error(), "no-such-flag") || !strings.Contains(err.Error(), "kube-apiserver.log") {
			t.Errorf("error lacks the log tail: %v", err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("failure took %v", d)
		}
	})

	t.Run("Stop leaves no process behind", func(t *testing.T) {
		before := ourProcesses(t, env.Dir)
		if len(before) < 4 {
			t.Errorf("expected etcd, 2 apiservers and a controller-manager, found %v", before)
		}
		start := time.Now()
		if err := env.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("Stop took %v", time.Since(start).Round(10*time.Millisecond))
		if left := ourProcesses(t, env.Dir); len(left) > 0 {
			t.Fatalf("processes left after Stop: %v", left)
		}
	})
}

// ourProcesses lists the live (non-zombie) processes that are children of
// this test binary or mention dir on their command line, as "pid cmd".
func ourProcesses(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	self := os.Getpid()
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cmd := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if ppid == self || strings.Contains(cmd, dir) {
			name := cmd
			if i := strings.IndexByte(name, ' '); i > 0 {
				name = name[:i]
			}
			found = append(found, e.Name()+" "+filepath.Base(name))
		}
	}
	return found
}
