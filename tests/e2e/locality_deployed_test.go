//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// TestLocalityServerAsDeployed runs the locality server the way the
// operator deploys it: the real operator renders and applies its
// ServiceAccount, RBAC and Deployment for an Istio resource with
// spec.localityLB.enabled; the real meshfleet binary then runs with the
// Deployment's own arguments, authenticated as that ServiceAccount (a
// client certificate for its user name and groups instead of a mounted
// token, so --in-cluster becomes --mesh-kubeconfig). It must find both
// remotes through their kubeconfig Secrets (readable by name only), write
// the rules for their services, hold the Lease, and meet no "forbidden".
// When a remote's kubeconfig Secret then goes away, that remote shows as
// not synced, no rule changes, and the health it publishes says so; killed,
// its health reads as not running once its Lease expires.
func TestLocalityServerAsDeployed(t *testing.T) {
	m := startMesh(t, v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary,
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
	})
	meshfleet := buildMeshfleet(t)
	for _, r := range mcRemotes {
		ws := lmcWorkloads[r]
		var newNodes []workload
		for _, w := range ws {
			if w.node != "node-r1-z1" {
				newNodes = append(newNodes, w)
			}
		}
		createNodes(m.ctx, t, m.kube[r], newNodes)
		createNamedService(m.ctx, t, m.kube[r], "echo-"+r, ws)
		m.kubeconfigSecret(r)
		m.createRemoteIstio(r, "")
	}

	// The operator renders the server, and its Role names both Secrets.
	c := m.c[mcPrimary]
	var dep appsv1.Deployment
	m.eventually(90*time.Second, "the operator applied the locality server and its Role names both kubeconfig Secrets", func() error {
		if err := c.Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: render.LocalityServerName}, &dep); err != nil {
			return err
		}
		var role rbacv1.Role
		if err := c.Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: render.LocalityServerName}, &role); err != nil {
			return err
		}
		for _, rule := range role.Rules {
			if slices.Contains(rule.Resources, "secrets") {
				if got := strings.Join(rule.ResourceNames, ","); got == "remote1-kubeconfig,remote2-kubeconfig" && fmt.Sprint(rule.Verbs) == "[get]" {
					return nil
				}
				return fmt.Errorf("secrets rule %v on %v", rule.Verbs, rule.ResourceNames)
			}
		}
		return fmt.Errorf("no secrets rule yet")
	})
	ctr := dep.Spec.Template.Spec.Containers[0]
	t.Logf("rendered: %d replicas, image %s, args %v", *dep.Spec.Replicas, ctr.Image, ctr.Args)

	// Its identity: the ServiceAccount's user name and groups.
	sa := "system:serviceaccount:" + mcNS + ":" + render.LocalityServerName
	cfg, err := m.env.Cluster(mcPrimary).UserConfig(sa, "system:serviceaccounts", "system:serviceaccounts:"+mcNS)
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["primary"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["primary"] = &clientcmdapi.Context{Cluster: "primary", AuthInfo: "sa"}
	kc.CurrentContext = "primary"
	raw, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(m.env.Dir, "locality")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	debug := l.Addr().String()
	_ = l.Close()
	var args []string
	for _, a := range ctr.Args {
		switch {
		case a == "--in-cluster":
			a = "--mesh-kubeconfig=" + writeFile(t, dir, "sa.kubeconfig", raw)
		case strings.HasPrefix(a, "--debug-addr="):
			a = "--debug-addr=" + debug
		}
		args = append(args, a)
	}
	p := runMeshfleet(t, meshfleet(), dir, "locality", args...)
	waitGetOK(m, p, "http://"+debug+"/healthz")

	drs := dynamic.NewForConfigOrDie(m.env.Cluster(mcPrimary).Config).Resource(rulesync.GVR).Namespace(mcNS)
	m.eventually(60*time.Second, "rules for both remotes' services", func() error {
		got := ruleVersions(m.ctx, t, drs)
		for _, r := range mcRemotes {
			if _, ok := got[locality.RuleName("default", "echo-"+r)]; !ok {
				return fmt.Errorf("rules %v", got)
			}
		}
		return nil
	})
	m.eventually(30*time.Second, "the server holds the Lease", func() error {
		resp, err := httpGet("http://" + debug + "/debug/locality")
		if err != nil {
			return err
		}
		if !strings.Contains(resp, "leader: true") || !strings.Contains(resp, "name: remote2\n  synced: true") {
			return fmt.Errorf("debug state:\n%s", resp)
		}
		return nil
	})
	// The rules settle first: a new rule is created, then taken over by
	// server-side apply (decision 43), and a late write after the snapshot
	// would read as a change (CI7 saw one).
	var before map[string]string
	settled := time.Now()
	m.eventually(30*time.Second, "the rules settled for 2 s", func() error {
		now := ruleVersions(m.ctx, t, drs)
		if fmt.Sprint(now) != fmt.Sprint(before) {
			before, settled = now, time.Now()
		}
		if time.Since(settled) < 2*time.Second {
			return fmt.Errorf("rules %v last changed %v ago", before, time.Since(settled).Round(time.Millisecond))
		}
		return nil
	})
	// remote2's kubeconfig Secret goes away (deleted by mistake, rotated
	// badly): remote2 is still joined but unreachable, so its rule is held.
	if err := c.Delete(m.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: mcNS, Name: "remote2-kubeconfig"}}); err != nil {
		t.Fatal(err)
	}
	m.eventually(60*time.Second, "remote2 shown as not synced, its rule held", func() error {
		resp, err := httpGet("http://" + debug + "/debug/locality")
		if err != nil {
			return err
		}
		if !strings.Contains(resp, "name: remote2\n  synced: false") || !strings.Contains(resp, "- "+locality.RuleName("default", "echo-remote2")) {
			return fmt.Errorf("debug state:\n%s", resp)
		}
		return nil
	})
	if after := ruleVersions(m.ctx, t, drs); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("rules changed after remote2's Secret went away: %v, before %v", after, before)
	}
	// The writer published that, under its own RBAC, where meshctl status
	// reads it (the ConfigMap the operator rendered, and the Lease).
	m.eventually(30*time.Second, "the published health names remote2 and the held rule", func() error {
		s, lease, err := health.Read(m.ctx, m.kube[mcPrimary], mcNS)
		if err != nil {
			return err
		}
		v := health.Judge(s, lease, time.Now())
		if v.State != health.StateDegraded || !strings.Contains(v.Line, "member remote2 not synced since") || !strings.Contains(v.Line, "rules held") {
			return fmt.Errorf("%s: %s", v.State, v.Line)
		}
		t.Logf("published: %s: %s", v.State, v.Line)
		return nil
	})
	log, _ := os.ReadFile(filepath.Join(dir, "locality.log"))
	if strings.Contains(strings.ToLower(string(log)), "forbidden") {
		t.Errorf("the locality server, as its ServiceAccount, was refused something:\n%s", localproc.TailFile(filepath.Join(dir, "locality.log"), 40))
	}
	t.Logf("as %s: rules for both remotes' services written, Lease held, nothing forbidden", sa)

	// Killed as a crash or an eviction would end it, the server cannot
	// release its Lease: once the Lease expires, the summary it left reads
	// as not running, not as what it last said.
	killed := time.Now()
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.eventually(60*time.Second, "the killed server's health reads as not running", func() error {
		s, lease, err := health.Read(m.ctx, m.kube[mcPrimary], mcNS)
		if err != nil {
			return err
		}
		if v := health.Judge(s, lease, time.Now()); v.State != health.StateNotRunning || !strings.Contains(v.Line, "expired") {
			return fmt.Errorf("%s: %s", v.State, v.Line)
		}
		return nil
	})
	t.Logf("after SIGKILL, read as not running after %v (the Lease's duration)", time.Since(killed).Round(time.Second))
}

// httpGet returns the body of a 200 answer to GET url.
func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), nil
}
