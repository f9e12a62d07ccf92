package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/version"
	"sigs.k8s.io/yaml"
)

func key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

func byKey(t *testing.T, objs []*unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, o := range objs {
		// Compare through JSON so numbers and lists have one form.
		b, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[key(o)]; dup {
			t.Fatalf("%s rendered twice", key(o))
		}
		out[key(o)] = m
	}
	return out
}

// TestChartInstallsWhatMeshctlInstalls: the chart with its default values,
// into meshfleet-system, renders the objects `meshctl install` applies for
// CRDs and the operator (less the namespace, which helm install
// --create-namespace makes), field for field.
func TestChartInstallsWhatMeshctlInstalls(t *testing.T) {
	fromChart, err := Render(install.OperatorNamespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	ops, err := install.Operator("")
	if err != nil {
		t.Fatal(err)
	}
	var fromMeshctl []*unstructured.Unstructured
	for _, o := range append(crds, ops...) {
		if o.GetKind() != "Namespace" {
			fromMeshctl = append(fromMeshctl, o)
		}
	}
	if diff := cmp.Diff(byKey(t, fromMeshctl), byKey(t, fromChart)); diff != "" {
		t.Fatalf("the chart (+) and meshctl install (-) differ; change both manifests/operator and manifests/charts/meshfleet, then run make generate:\n%s", diff)
	}
}

// TestChartCopiesAreCurrent: the chart's crds/ and files/operator-role.yaml
// are the generated crds/ and manifests/operator/rbac/role.yaml.
func TestChartCopiesAreCurrent(t *testing.T) {
	pairs := map[string]string{"../../manifests/operator/rbac/role.yaml": "../../manifests/charts/meshfleet/files/operator-role.yaml"}
	gen, _ := filepath.Glob("../../crds/*.yaml")
	for _, g := range gen {
		pairs[g] = "../../manifests/charts/meshfleet/crds/" + filepath.Base(g)
	}
	copies, _ := filepath.Glob("../../manifests/charts/meshfleet/crds/*.yaml")
	if len(copies) != len(gen) {
		t.Errorf("chart has %d CRDs, crds/ has %d: run make generate", len(copies), len(gen))
	}
	for src, cp := range pairs {
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(cp)
		if err != nil {
			t.Fatalf("%v: run make generate", err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run make generate", cp, src)
		}
	}
}

func deployment(t *testing.T, values string) *appsv1.Deployment {
	t.Helper()
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		t.Fatal(err)
	}
	objs, err := Render("mf", vals)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("no Deployment rendered")
	return nil
}

func TestChartValues(t *testing.T) {
	d := deployment(t, "")
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != version.Image() || c.Env[0].Value != version.Image() {
		t.Errorf("default image %q (MESHFLEET_IMAGE %q), want %q", c.Image, c.Env[0].Value, version.Image())
	}
	if !slices.Equal(c.Args, []string{"operator", "--leader-elect", "--leader-elect-namespace=mf"}) {
		t.Errorf("default args %q", c.Args)
	}

	d = deployment(t, `
image: {repository: registry.local/mf, tag: v9, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
operator:
  replicas: 3
  leaderElection: false
  resources: {requests: {cpu: 1}}
  extraArgs: [--resync=1m]
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Exists}]
  priorityClassName: system-cluster-critical
  podAnnotations: {team: mesh}
locality: {image: registry.local/loc:v1}
tunnel:
  url: https://meshfleet-tunnel.mf.svc:8443
  serverHosts: [meshfleet-tunnel.mf.svc, tunnel.example.com]
`)
	s := d.Spec.Template.Spec
	c = s.Containers[0]
	for what, ok := range map[string]bool{
		"image":             c.Image == "registry.local/mf:v9",
		"pullPolicy":        c.ImagePullPolicy == "Always",
		"pullSecrets":       len(s.ImagePullSecrets) == 1 && s.ImagePullSecrets[0].Name == "regcred",
		"replicas":          *d.Spec.Replicas == 3,
		"resources":         c.Resources.Requests.Cpu().String() == "1",
		"nodeSelector":      s.NodeSelector["kubernetes.io/os"] == "linux",
		"tolerations":       len(s.Tolerations) == 1 && s.Tolerations[0].Key == "dedicated",
		"priorityClassName": s.PriorityClassName == "system-cluster-critical",
		"podAnnotations":    d.Spec.Template.Annotations["team"] == "mesh" && d.Spec.Template.Annotations["prometheus.io/scrape"] == "true",
		"locality image":    c.Env[0].Name == "MESHFLEET_IMAGE" && c.Env[0].Value == "registry.local/loc:v1",
		"tunnel CA volume":  len(s.Volumes) == 3 && s.Volumes[1].Secret.SecretName == "meshfleet-tunnel-ca",
		"args": slices.Equal(c.Args, []string{"operator", "--tunnel-url=https://meshfleet-tunnel.mf.svc:8443",
			"--tunnel-ca-file=/etc/meshfleet/tunnel-ca/root-cert.pem", "--tunnel-token-file=" + render.TunnelTokenPath,
			"--tunnel-server-hosts=meshfleet-tunnel.mf.svc,tunnel.example.com", "--resync=1m"}),
	} {
		if !ok {
			t.Errorf("%s not rendered as set in the values", what)
		}
	}

	// The operator runs the tunnel server: its flags, and the tunnel CA
	// mounted optional (the operator creates it after its pod started).
	d = deployment(t, `
tunnel:
  url: https://meshfleet-tunnel.mf.svc:443
  serverHosts: [meshfleet-tunnel.mf.svc]
  runServer: true
  agentServiceType: NodePort
`)
	s = d.Spec.Template.Spec
	c = s.Containers[0]
	if !slices.Equal(c.Args, []string{"operator", "--leader-elect", "--leader-elect-namespace=mf",
		"--tunnel-url=https://meshfleet-tunnel.mf.svc:443", "--tunnel-ca-file=/etc/meshfleet/tunnel-ca/root-cert.pem", "--tunnel-token-file=" + render.TunnelTokenPath,
		"--tunnel-server-hosts=meshfleet-tunnel.mf.svc", "--run-tunnel-server", "--tunnel-agent-service-type=NodePort"}) {
		t.Errorf("tunnel.runServer args %q", c.Args)
	}
	if v := s.Volumes[1].Secret; v == nil || v.Optional == nil || !*v.Optional {
		t.Errorf("tunnel.runServer: the tunnel CA volume must be optional (the operator creates the CA), got %+v", s.Volumes[1])
	}
	// Without runServer the CA is the user's and required.
	if v := deployment(t, "tunnel: {url: https://t:8443}").Spec.Template.Spec.Volumes[1].Secret; v.Optional != nil && *v.Optional {
		t.Errorf("tunnel CA volume optional without tunnel.runServer")
	}
	if _, err := Render("mf", map[string]any{"tunnel": map[string]any{"runServer": true}}); err == nil || !strings.Contains(err.Error(), "tunnel.serverHosts") {
		t.Errorf("tunnel.runServer without serverHosts: err %v, want one naming tunnel.serverHosts", err)
	}
	// The chart never renders the objects the operator owns when it runs
	// the tunnel server (manifests/tunnel/server.yaml): both would own them.
	objs, err := Render("meshfleet-system", map[string]any{"tunnel": map[string]any{"runServer": true, "serverHosts": []any{"t"}, "url": "https://t"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if strings.HasPrefix(o.GetName(), "meshfleet-tunnel") {
			t.Errorf("the chart renders %s, which the operator owns with tunnel.runServer", key(o))
		}
	}
}

// TestChartLint runs `helm lint --strict` on the chart, with the defaults
// and with every optional value set.
func TestChartLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"defaults": nil,
		"everything": {
			"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
			"operator": map[string]any{"nodeSelector": map[string]any{"a": "b"}, "tolerations": []any{map[string]any{"operator": "Exists"}},
				"affinity": map[string]any{"nodeAffinity": map[string]any{}}, "extraArgs": []any{"--resync=1m"}, "priorityClassName": "p"},
			"tunnel": map[string]any{"url": "https://t:8443", "serverHosts": []any{"t"}, "runServer": true, "agentServiceType": "ClusterIP"},
		},
	} {
		l := action.NewLint()
		l.Strict, l.Namespace = true, "meshfleet-system"
		res := l.Run([]string{"../../manifests/charts/meshfleet"}, vals)
		for _, m := range res.Messages {
			if m.Severity < support.WarningSev {
				continue // INFO: "icon is recommended"
			}
			t.Errorf("%s: helm lint: %s", name, m)
		}
		for _, err := range res.Errors {
			t.Errorf("%s: helm lint: %v", name, err)
		}
	}
}

func TestChartVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":            "1.2.3",
		"v1.2.3-rc.1":       "1.2.3-rc.1",
		"8f0f62f-dirty":     "0.0.0-8f0f62f-dirty",
		"v1.2.3-4-gabcdef0": "1.2.3-4-gabcdef0",
		"v0.0.0-dev":        "0.0.0-dev",
	} {
		if got := chartVersion(in); got != want {
			t.Errorf("chartVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPackage: the packaged chart loads back with the build's version,
// appVersion and image, its values.yaml comments kept.
func TestPackage(t *testing.T) {
	p, err := Package(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := loader.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Version != chartVersion(version.Version()) || c.Metadata.AppVersion != version.TagOf(version.Version()) {
		t.Errorf("packaged chart %s version %s appVersion %s", p, c.Metadata.Version, c.Metadata.AppVersion)
	}
	if c.Values["image"].(map[string]any)["repository"] != version.Repository() {
		t.Errorf("packaged image.repository %v", c.Values["image"])
	}
	for _, f := range c.Raw {
		if f.Name == "values.yaml" && !bytes.Contains(f.Data, []byte("# -- Repository of meshfleet's image")) {
			t.Errorf("packaged values.yaml lost its comments")
		}
	}
}
