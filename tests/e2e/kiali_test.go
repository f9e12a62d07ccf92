//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/pkg/sandbox"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// kialiSecretsDir is where Kiali reads remote clusters' kubeconfigs from
// (kubernetes.RemoteClusterSecretsDir in Kiali): what its operator mounts
// from the Secrets labelled kiali.io/multiCluster.
const kialiSecretsDir = "/kiali-remote-cluster-secrets"

// TestKiali runs the real Kiali (v1.89.0, built by make tools) against the
// sandbox with spec.kiali.enabled, its remotes joined directly: meshfleet's
// kiali.io/multiCluster Secrets are mounted where Kiali's operator mounts
// them (a private mount namespace), and with the RBAC meshfleet renders in
// the remotes — and nothing more — Kiali starts, reports every cluster
// accessible, lists each remote's namespaces and the demo's workloads in
// the remotes.
func TestKiali(t *testing.T) {
	bin := os.Getenv("MESHFLEET_KIALI")
	if bin == "" {
		t.Fatal("MESHFLEET_KIALI is not set: run make tools (it builds Kiali) or make e2e")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ist := sandbox.DefaultIstio()
	ist.Spec.Kiali.Enabled = true
	dir := filepath.Join(t.TempDir(), "sandbox")
	sb, err := sandbox.Up(ctx, sandbox.Options{Dir: dir, Remotes: 2, Direct: true, AggregatedRoles: true,
		Istio: ist, Progress: tlog{t}})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Down(); err != nil {
			t.Errorf("sandbox down: %v", err)
		}
	})

	// The Secrets, as Kiali's operator would mount them.
	secrets := filepath.Join(t.TempDir(), "secrets")
	primary, err := kubernetes.NewForConfig(sb.Primary().Config)
	if err != nil {
		t.Fatal(err)
	}
	var list *corev1.SecretList
	testenv.Eventually(t, time.Minute, "a kiali.io/multiCluster Secret per remote", func() error {
		list, err = primary.CoreV1().Secrets("istio-system").List(ctx, metav1.ListOptions{LabelSelector: "kiali.io/multiCluster=true"})
		if err != nil {
			return err
		}
		if len(list.Items) != len(sb.Clusters)-1 {
			return fmt.Errorf("%d Secrets", len(list.Items))
		}
		return nil
	})
	for _, s := range list.Items {
		for key, val := range s.Data {
			p := filepath.Join(secrets, s.Name, key)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, val, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(kialiSecretsDir, 0o755); err != nil {
		t.Fatalf("Kiali reads its remote clusters only from %s, which this test needs to create (as root): %v", kialiSecretsDir, err)
	}

	port, err := localproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	static := filepath.Join(t.TempDir(), "console")
	if err := os.MkdirAll(static, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "kiali.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`in_cluster: false
istio_namespace: istio-system
auth: {strategy: anonymous}
deployment:
  namespace: istio-system
  remote_secret_path: %s
  view_only_mode: true
kubernetes_config: {cluster_name: %s}
login_token: {signing_key: meshfleet-test-signing-key-0123456789}
server:
  address: 127.0.0.1
  port: %d
  static_content_root_directory: %s
  observability: {metrics: {enabled: false}}
external_services:
  istio: {istio_api_enabled: false}
  prometheus: {url: "http://127.0.0.1:1"}
  grafana: {enabled: false}
  tracing: {enabled: false}
`, sb.Primary().Kubeconfig, ist.Spec.ClusterName, port, static)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A private mount namespace where the Secrets directory is bound at
	// Kiali's fixed path; nothing outside it sees the mount.
	logPath := filepath.Join(t.TempDir(), "kiali.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" "$2" && exec "$3" -config "$4"`, "sh", secrets, kialiSecretsDir, bin, cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("last lines of Kiali's log:\n%s", localproc.TailFile(logPath, 30))
		}
	})
	base := "http://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	get := func(path string, out any) error {
		resp, err := http.Get(base + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
		}
		return json.Unmarshal(b, out)
	}
	var conf struct {
		Clusters map[string]struct {
			Name        string `json:"name"`
			Accessible  bool   `json:"accessible"`
			IsKialiHome bool   `json:"isKialiHome"`
		} `json:"clusters"`
	}
	testenv.Eventually(t, 3*time.Minute, "Kiali's /api/config lists every cluster as accessible", func() error {
		if err := get("/api/config", &conf); err != nil {
			return err
		}
		for _, c := range sb.Clusters {
			if cl, ok := conf.Clusters[c.Name]; !ok || !cl.Accessible {
				return fmt.Errorf("cluster %s: %+v (all: %+v)", c.Name, cl, conf.Clusters)
			}
		}
		return nil
	})
	t.Logf("Kiali's clusters: %+v", conf.Clusters)
	var namespaces []struct {
		Name    string `json:"name"`
		Cluster string `json:"cluster"`
	}
	testenv.Eventually(t, time.Minute, "Kiali lists each remote's namespaces", func() error {
		if err := get("/api/namespaces", &namespaces); err != nil {
			return err
		}
		for _, c := range sb.Clusters[1:] {
			found := false
			for _, n := range namespaces {
				if n.Cluster == c.Name && n.Name == "istio-system" {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("no namespace istio-system of %s in %+v", c.Name, namespaces)
			}
		}
		return nil
	})
	// The demo's servers run as Pods in the remotes (no controller: Kiali
	// lists each as a workload of its own).
	for _, z := range sandbox.DemoZones([]string{"remote-1", "remote-2"}) {
		var wl struct {
			Cluster   string `json:"cluster"`
			Workloads []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"workloads"`
		}
		testenv.Eventually(t, time.Minute, "Kiali lists workload demo-"+z.Zone+" of "+z.Cluster, func() error {
			if err := get("/api/clusters/workloads?namespaces=demo&clusterName="+z.Cluster, &wl); err != nil {
				return err
			}
			for _, w := range wl.Workloads {
				if w.Name == "demo-"+z.Zone {
					return nil
				}
			}
			return fmt.Errorf("workloads of %s: %+v", z.Cluster, wl)
		})
	}
}
