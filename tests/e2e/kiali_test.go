//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/internal/sandbox"
	"github.com/meshfleet/meshfleet/pkg/render"
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
// the remotes. With Kiali's token for remote-2 revoked, Kiali lists none
// of remote-2's namespaces and refuses to read one (Unauthorized), while
// the others stay; after the fix (the operator writes a new token, Kiali
// restarted) it lists every cluster again.
func TestKiali(t *testing.T) {
	bin := os.Getenv("MESHFLEET_KIALI")
	if bin == "" {
		t.Fatal("MESHFLEET_KIALI is not set: run make tools (it builds Kiali) or make e2e")
	}
	ctx := testenv.Context(t)
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
	// mount writes the kiali.io/multiCluster Secrets (one per remote) to
	// secrets and returns them by name.
	mount := func() map[string]corev1.Secret {
		var list *corev1.SecretList
		testenv.Eventually(t, 3*time.Minute, "a kiali.io/multiCluster Secret per remote", func() error {
			list, err = primary.CoreV1().Secrets("istio-system").List(ctx, metav1.ListOptions{LabelSelector: "kiali.io/multiCluster=true"})
			if err != nil {
				return err
			}
			if len(list.Items) != len(sb.Clusters)-1 {
				return fmt.Errorf("%d Secrets", len(list.Items))
			}
			return nil
		})
		byName := map[string]corev1.Secret{}
		for _, s := range list.Items {
			byName[s.Name] = s
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
		return byName
	}
	mounted := mount()
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
	// Kiali runs in a private mount namespace where the Secrets directory
	// is bound at Kiali's fixed path; nothing outside it sees the mount.
	// It reads the Secrets only when it starts (as in a cluster, where its
	// operator restarts it when they change).
	logPath := filepath.Join(t.TempDir(), "kiali.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var kiali *exec.Cmd
	start := func() {
		cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" "$2" && exec "$3" -config "$4"`, "sh", secrets, kialiSecretsDir, bin, cfg)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		kiali = cmd
	}
	stop := func() {
		if kiali != nil {
			_ = kiali.Process.Kill()
			_ = kiali.Wait()
			kiali = nil
		}
	}
	start()
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("last lines of Kiali's log:\n%s", localproc.TailFile(logPath, 30))
		}
	})
	base := "http://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	// get reads path into out; an answer other than 200 is a *kialiError.
	get := func(path string, out any) error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return &kialiError{path: path, status: resp.Status, body: strings.TrimSpace(string(b))}
		}
		return json.Unmarshal(b, out)
	}
	type kialiCluster struct {
		Name        string `json:"name"`
		Accessible  bool   `json:"accessible"`
		IsKialiHome bool   `json:"isKialiHome"`
	}
	var conf struct {
		Clusters map[string]kialiCluster `json:"clusters"`
	}
	type namespace struct {
		Name    string `json:"name"`
		Cluster string `json:"cluster"`
	}
	// nsInfo reads Kiali's view of namespace istio-system of a cluster,
	// which Kiali reads live from that cluster's API server once its cache
	// of namespaces (10 s) has expired.
	nsInfo := func(cluster string) error {
		var ns namespace
		return get("/api/namespaces/istio-system/info?clusterName="+cluster, &ns)
	}
	// healthy waits until Kiali reports every cluster accessible, lists
	// each cluster's namespaces and reads namespace istio-system of each.
	healthy := func(when string) {
		t.Helper()
		testenv.Eventually(t, 3*time.Minute, when+": Kiali's /api/config lists every cluster as accessible", func() error {
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
		t.Logf("%s: Kiali's clusters: %+v", when, conf.Clusters)
		var namespaces []namespace
		testenv.Eventually(t, 2*time.Minute, when+": Kiali lists each cluster's namespaces and reads each one's istio-system", func() error {
			if err := get("/api/namespaces", &namespaces); err != nil {
				return err
			}
			for _, c := range sb.Clusters {
				if !slices.Contains(namespaces, namespace{Name: "istio-system", Cluster: c.Name}) {
					return fmt.Errorf("no namespace istio-system of %s in %+v", c.Name, namespaces)
				}
				if err := nsInfo(c.Name); err != nil {
					return err
				}
			}
			return nil
		})
		t.Logf("%s: Kiali's /api/namespaces: %+v", when, namespaces)
	}
	healthy("Kiali started")

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

	// Revoke Kiali's token for remote-2: its service account there goes
	// (the operator puts one of that name back at its next resync and then
	// writes a token of the new account, but Kiali reads its Secrets only
	// at start, so it keeps the revoked one). Kiali reads each cluster's namespaces
	// live (past its 10 s cache), so it stops listing remote-2's and
	// answers an error for them, while the others stay. Its /api/config
	// still calls remote-2 accessible: Kiali v1.89.0 sets "accessible" for
	// every cluster it has a kubeconfig for (istio/discovery.go) and never
	// tries it.
	remote2, err := kubernetes.NewForConfig(sb.Clusters[2].Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote2.CoreV1().ServiceAccounts("istio-system").Delete(ctx, render.Kiali.ServiceAccount, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var namespaces []namespace
	var refused *kialiError
	testenv.Eventually(t, 2*time.Minute, "Kiali lists no namespace of remote-2 and refuses to read one, but lists and reads the other clusters'", func() error {
		err := nsInfo("remote-2")
		if err == nil {
			return errors.New("Kiali still reads namespace istio-system of remote-2")
		}
		if !errors.As(err, &refused) || !strings.Contains(refused.body, "Unauthorized") {
			return fmt.Errorf("reading remote-2's istio-system: %v, want an error saying Unauthorized", err)
		}
		if err := get("/api/namespaces", &namespaces); err != nil {
			return err
		}
		for _, c := range sb.Clusters {
			listed := slices.Contains(namespaces, namespace{Name: "istio-system", Cluster: c.Name})
			if c.Name == "remote-2" && listed {
				return fmt.Errorf("Kiali still lists remote-2's namespaces: %+v", namespaces)
			}
			if c.Name != "remote-2" {
				if !listed {
					return fmt.Errorf("no namespace istio-system of %s in %+v", c.Name, namespaces)
				}
				if err := nsInfo(c.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
	t.Logf("Kiali's token for remote-2 revoked: /api/namespaces: %+v", namespaces)
	t.Logf("Kiali's token for remote-2 revoked: %v", refused)
	if b, err := os.ReadFile(logPath); err == nil {
		var said []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "[remote-2]") {
				said = append(said, line)
			}
		}
		t.Logf("Kiali's token for remote-2 revoked: Kiali's log on remote-2 (%d lines, the last):\n%s", len(said), strings.Join(said[max(0, len(said)-2):], "\n"))
	}
	if err := get("/api/config", &conf); err != nil {
		t.Fatal(err)
	}
	t.Logf("Kiali's token for remote-2 revoked: Kiali's clusters: %+v", conf.Clusters)
	if !conf.Clusters["remote-2"].Accessible {
		t.Errorf("Kiali now reports remote-2 inaccessible in /api/config (%+v): it calls clusters accessible without trying them in v1.89.0; assert it here", conf.Clusters)
	}

	// The fix: the operator, seeing an account of another UID, writes the
	// Secret again with a new token by itself, and Kiali, restarted, reads
	// it.
	name := render.Kiali.SecretName("remote-2")
	testenv.Eventually(t, 3*time.Minute, "the operator writes Secret "+name+" with a new token", func() error {
		s, err := primary.CoreV1().Secrets("istio-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if bytes.Equal(s.Data["remote-2"], mounted[name].Data["remote-2"]) {
			return errors.New("still the revoked token")
		}
		return nil
	})
	stop()
	mounted = mount()
	start()
	healthy("Kiali restarted with the new Secret")
}

// kialiError is an answer of Kiali's API other than 200.
type kialiError struct {
	path, status, body string
}

func (e *kialiError) Error() string { return fmt.Sprintf("GET %s: %s: %s", e.path, e.status, e.body) }
