//go:build integration

package dashboards

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/crds"
	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

var update = flag.Bool("update", false, "rewrite manifests/dashboards/configmaps.yaml from the dashboards' JSON")

// dataPlane lists the metrics no meshfleet component exports: Istio's
// proxies do. The test app exports them (MeshMetrics, envoyMetrics).
var dataPlane = []string{"istio_requests_total", "istio_request_duration_milliseconds", "envoy_cluster_outlier_detection_"}

// eventOnly lists queries whose series appear only after an event the
// test does not provoke; they must still parse.
var eventOnly = map[string]string{
	"meshfleet_locality_write_errors_total": "a write of the locality server fails only when the API server refuses it; the counter has a series per operation after the first error",
}

// TestDashboards starts real meshfleet components (the operator, a tunnel
// server and agent, the locality server feeding a real istiod) and a real
// Prometheus scraping them, then runs every query of every dashboard panel
// through Prometheus's HTTP API: each must parse and return data.
func TestDashboards(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	dashboards := loadDashboards(t)
	checkConfigMaps(t, dashboards)

	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	c := env.Cluster("primary")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	loc := startLocality(ctx, t, env, c) // creates istio-system
	jobs := map[string][]string{
		"locality":        {loc},
		"operator":        {startOperator(ctx, t, c.Config)},
		"tunnel-server":   {startTunnel(ctx, t, c.Config)},
		"mesh-data-plane": {startDataPlane(ctx, t)},
	}
	prom := StartPrometheus(t, jobs, time.Second)
	prom.WaitTargetsUp(t, 30*time.Second)
	t.Logf("prometheus %s scraping %v", prom.URL, jobs)

	lintLive(t, jobs)

	// Every query must return data; rates need two scrapes, so retry.
	type query struct{ dashboard, panel, expr string }
	var queries []query
	for name, d := range dashboards {
		for _, p := range panels(d) {
			for _, tg := range p.Targets {
				queries = append(queries, query{name, p.Title, tg.Expr})
			}
		}
	}
	sort.Slice(queries, func(i, j int) bool {
		return queries[i].dashboard+queries[i].panel < queries[j].dashboard+queries[j].panel
	})
	pending := queries
	deadline := time.Now().Add(90 * time.Second)
	lastErr := map[string]string{}
	for len(pending) > 0 && time.Now().Before(deadline) {
		var next []query
		for _, q := range pending {
			n, err := run(ctx, prom, q.expr)
			switch {
			case err != nil && strings.Contains(err.Error(), "bad_data"):
				t.Fatalf("%s / %q: query does not parse: %v\n%s", q.dashboard, q.panel, err, q.expr)
			case err != nil:
				lastErr[q.expr] = err.Error()
				next = append(next, q)
			case n == 0 && eventOnlyReason(q.expr) != "":
				t.Logf("ok  %-32s %-58q parses; no data expected: %s", q.dashboard, q.panel, eventOnlyReason(q.expr))
			case n == 0:
				lastErr[q.expr] = "no data"
				next = append(next, q)
			default:
				source := "meshfleet"
				for _, m := range dataPlane {
					if strings.Contains(q.expr, m) {
						source = "data plane (test exporter)"
					}
				}
				t.Logf("ok  %-32s %-58q %d series, %s", q.dashboard, q.panel, n, source)
			}
		}
		pending = next
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	for _, q := range pending {
		t.Errorf("%s / %q: %s after 90s\n  %s", q.dashboard, q.panel, lastErr[q.expr], q.expr)
	}
	t.Logf("%d queries in %d dashboards: %d parse and need no data (%d listed as event-only), the rest returned data", len(queries), len(dashboards), len(eventOnly), len(eventOnly))
}

// TestMetricNames lints every meshfleet metric family that the components
// register, with client_golang's promlint.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	pki := newPKI(t)
	if _, err := tunnel.NewServer(tunnel.ServerOptions{ServingCertificate: tunnel.StaticKeyPair(pki.serving), AgentCAs: tunnel.StaticCABundle(pki.root.Cert),
		ClientCAs: tunnel.StaticCABundle(pki.root.Cert), Clusters: tunnel.NewClusterSet("c"), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: "c", Servers: []string{"https://127.0.0.1:1"}, Certificate: tunnel.StaticKeyPair(pki.serving), ServerCAs: tunnel.StaticCABundle(pki.root.Cert),
		Upstream: &rest.Config{Host: "https://127.0.0.1:1"}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := rulesync.New(rulesync.Options{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Snapshot: func() *topology.Topology { return &topology.Topology{} },
		Members: func() map[string]bool { return nil }, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if err := operator.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// Families that have no sample yet are not gathered: touch the
	// operator's write counter so it is linted too.
	operator.APIWrites.WithLabelValues("lint", "Lint")
	var families []string
	for _, g := range []prometheus.Gatherer{reg, ctrlmetrics.Registry} {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if !strings.HasPrefix(mf.GetName(), "meshfleet_") {
				continue
			}
			families = append(families, mf.GetName())
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if strings.HasPrefix(p.Metric, "meshfleet_") {
				t.Errorf("metric %s: %s", p.Metric, p.Text)
			}
		}
	}
	t.Logf("linted %d meshfleet metric families: %s", len(families), strings.Join(families, " "))
}

func eventOnlyReason(expr string) string {
	for m, why := range eventOnly {
		if strings.Contains(expr, m) {
			return why
		}
	}
	return ""
}

// lintLive lints the metrics each component serves, with client_golang's
// promlint; meshfleet's own families must have no problems.
func lintLive(t *testing.T, jobs map[string][]string) {
	t.Helper()
	n := 0
	for job, targets := range jobs {
		if job == "mesh-data-plane" {
			continue // Istio's and Envoy's names, not ours
		}
		for _, target := range targets {
			resp, err := http.Get("http://" + target + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			problems, err := promlint.New(resp.Body).Lint()
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", job, err)
			}
			for _, p := range problems {
				if strings.HasPrefix(p.Metric, "meshfleet_") {
					t.Errorf("%s: metric %s: %s", job, p.Metric, p.Text)
				}
			}
			n++
		}
	}
	t.Logf("promlint: no problems in meshfleet_* metrics of %d live components", n)
}

// dashboard is the part of Grafana's dashboard JSON the test reads.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

func panels(d dashboard) []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

const dashboardsDir = "../../manifests/dashboards"

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s: %v", dashboardsDir, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ids := map[int]bool{}
		for _, p := range panels(d) {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", f, p.ID)
			}
			ids[p.ID] = true
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
		}
		if d.UID == "" || d.UID+".json" != filepath.Base(f) {
			t.Errorf("%s: uid %q; name the file after the uid", f, d.UID)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// checkConfigMaps checks that configmaps.yaml holds each dashboard's JSON,
// labelled for Grafana's sidecar (rewritten with -update).
func checkConfigMaps(t *testing.T, dashboards map[string]dashboard) {
	t.Helper()
	var names []string
	for n := range dashboards {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Generated from the *.json files beside it by\n#   go test -tags integration ./tests/dashboards -run TestDashboards -update\n" +
		"# Grafana's dashboard sidecar loads ConfigMaps labelled grafana_dashboard: \"1\".\n")
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(dashboardsDir, n))
		if err != nil {
			t.Fatal(err)
		}
		cm := corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{
				Name: strings.TrimSuffix(n, ".json"), Namespace: "istio-system",
				Labels:      map[string]string{"grafana_dashboard": "1", "app.kubernetes.io/part-of": "meshfleet"},
				Annotations: map[string]string{"grafana_folder": "meshfleet"},
			},
			Data: map[string]string{n: string(raw)},
		}
		y, err := yaml.Marshal(cm)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	path := filepath.Join(dashboardsDir, "configmaps.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil || string(have) != b.String() {
		t.Fatalf("%s is stale (or missing: %v); run go test -tags integration ./tests/dashboards -run TestDashboards -update", path, err)
	}
}

// run runs an instant query with Grafana's variables filled in and returns
// the number of series.
func run(ctx context.Context, prom *Prometheus, expr string) (int, error) {
	expr = strings.NewReplacer("$__rate_interval", "30s", "${datasource}", "").Replace(expr)
	v, _, err := prom.API.Query(ctx, expr, time.Now())
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case model.Vector:
		return len(v), nil
	case model.Matrix:
		return len(v), nil
	case *model.Scalar:
		return 1, nil
	}
	return 0, fmt.Errorf("unexpected result type %s", v.Type())
}

// startOperator installs meshfleet's CRDs, runs the operator with its
// metrics on a loopback port and creates an Istio resource (the sample) for
// it to reconcile. It returns the metrics address.
func startOperator(ctx context.Context, t *testing.T, cfg *rest.Config) string {
	t.Helper()
	ext := apiextensionsclient.NewForConfigOrDie(cfg)
	var plurals []string
	err := fs.WalkDir(crds.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		raw, err := crds.FS.ReadFile(p)
		if err != nil {
			return err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(raw, crd); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		plurals = append(plurals, crd.Spec.Names.Plural)
		_, err = ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("installing meshfleet CRDs: %v", err)
	}
	// The manager maps every kind it watches when it starts: wait until
	// discovery lists each CRD, not only the group's first one.
	disco := kubernetes.NewForConfigOrDie(cfg).Discovery()
	served := func() []string {
		list, err := disco.ServerResourcesForGroupVersion("meshfleet.io/v1beta1")
		if err != nil {
			return plurals
		}
		var missing []string
		for _, p := range plurals {
			if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == p }) {
				missing = append(missing, p)
			}
		}
		return missing
	}
	for missing := served(); len(missing) > 0; missing = served() {
		if ctx.Err() != nil {
			t.Fatalf("meshfleet.io/v1beta1 does not serve %v", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	addr := freeAddr(t)
	mgr, err := operator.New(cfg, operator.Options{MetricsAddr: addr, HealthAddr: "0", Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() { _ = mgr.Start(mctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	// The sample Istio resource: the operator reconciles it (and writes).
	raw, err := os.ReadFile("../../samples/istio.yaml")
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &obj.Object); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	gvr := schema.GroupVersionResource{Group: "meshfleet.io", Version: "v1beta1", Resource: "istios"}
	// The CRD may take a moment to be served.
	for {
		_, err = dyn.Resource(gvr).Namespace("istio-system").Create(ctx, obj, metav1.CreateOptions{})
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("creating the sample Istio resource: %v", err)
	}
	return addr
}

// startLocality runs the locality server over a topology watcher on the
// cluster, with a real istiod reading it through configSources, and a
// Service in two zones so that there is a DestinationRule to serve.
func startLocality(ctx context.Context, t *testing.T, env *testenv.Env, c *localcluster.Cluster) string {
	t.Helper()
	if err := localistiod.InstallCRDs(ctx, c.Config); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(c.Config)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createZonedService(ctx, t, kube)
	reg := prometheus.NewRegistry()
	srvCtx := testenv.Context(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := pipeline.New(pipeline.Options{Clusters: map[string]*rest.Config{c.Name: c.Config}, Logger: quiet, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Run(srvCtx) }()
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: c.Kubeconfig, Dir: filepath.Join(env.Dir, "istiod"), ClusterID: c.Name,
		MeshConfig: "localityLbSetting:\n  enabled: true\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	return ServeRegistry(t, reg)
}

func createZonedService(ctx context.Context, t *testing.T, kube kubernetes.Interface) {
	t.Helper()
	ptr := func(s string) *string { return &s }
	for _, n := range []struct{ name, region, zone string }{{"node-a", "r1", "z1"}, {"node-b", "r2", "z2"}} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{corev1.LabelTopologyRegion: n.region, corev1.LabelTopologyZone: n.zone}}}
		if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"}, Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}
	if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := true
	port := int32(7070)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "echo-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: &port}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"198.18.1.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, NodeName: ptr("node-a"), Zone: ptr("z1")},
			{Addresses: []string{"198.18.1.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, NodeName: ptr("node-b"), Zone: ptr("z2")},
		},
	}
	if _, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type pki struct {
	root    *ca.KeyPair
	roots   *x509.CertPool
	serving tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	root, err := ca.NewRoot(ca.RootOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{root: root, roots: x509.NewCertPool()}
	p.roots.AddCert(root.Cert)
	sc, err := tunnel.IssueServerCertificate(root, []string{"127.0.0.1"}, tunnel.CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if p.serving, err = sc.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
	return p
}

// startTunnel runs a tunnel server and an agent for cluster "remote1"
// (upstream: the test cluster), sends requests through it, and one that is
// refused; it returns the server's metrics address.
func startTunnel(ctx context.Context, t *testing.T, cluster *rest.Config) string {
	t.Helper()
	p := newPKI(t)
	reg := prometheus.NewRegistry()
	clientCAs, err := tunnel.CABundleFromPEM(cluster.CAData)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The caller is the cluster's admin, allowed by the access policy and
	// bound to cluster-admin under its mapped name.
	access := tunnel.DefaultAccessPolicy(tunnel.DefaultIstioNamespace, tunnel.DefaultMeshfleetNamespace)
	access.Allow = append(access.Allow, tunnel.AccessRule{User: "admin"})
	if _, err := kubernetes.NewForConfigOrDie(cluster).RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tunnel-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: mapping.User(access.Prefix, "admin")}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv, err := tunnel.NewServer(tunnel.ServerOptions{ServingCertificate: tunnel.StaticKeyPair(p.serving), AgentCAs: tunnel.StaticCABundle(p.root.Cert), ClientCAs: clientCAs,
		Access: &access, Clusters: tunnel.NewClusterSet("remote1"), Logger: quiet, Registerer: reg, PingInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	apiLn, _ := net.Listen("tcp", "127.0.0.1:0")
	agentLn, _ := net.Listen("tcp", "127.0.0.1:0")
	sctx := testenv.Context(t)
	go func() { _ = srv.Serve(sctx, apiLn, agentLn) }()
	ac, err := tunnel.IssueAgentCertificate(p.root, "remote1", tunnel.CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	acert, err := ac.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	agent, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: "remote1", Servers: []string{"https://" + agentLn.Addr().String()},
		Certificate: tunnel.StaticKeyPair(acert), ServerCAs: tunnel.StaticCABundle(p.root.Cert), Upstream: cluster, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = agent.Run(sctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(srv.Agents("remote1")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("tunnel agent did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	caller := &rest.Config{Host: "https://" + apiLn.Addr().String() + tunnel.ClustersPathPrefix + "remote1",
		TLSClientConfig: rest.TLSClientConfig{CAData: p.root.CertPEM, CertData: cluster.CertData, KeyData: cluster.KeyData}}
	kube := kubernetes.NewForConfigOrDie(caller)
	// Requests keep flowing so that rates have data at every scrape.
	go func() {
		for sctx.Err() == nil {
			_, _ = kube.CoreV1().Namespaces().List(sctx, metav1.ListOptions{})
			time.Sleep(100 * time.Millisecond)
		}
	}()
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test: provoking refusals
	go func() {
		for sctx.Err() == nil {
			if resp, err := insecure.Get("https://" + apiLn.Addr().String() + tunnel.ClustersPathPrefix + "remote1/api"); err == nil {
				resp.Body.Close() // no credentials: refused as unauthenticated
			}
			if resp, err := insecure.Get("https://" + agentLn.Addr().String() + tunnel.ConnectPath); err == nil {
				resp.Body.Close() // an "agent" without a certificate
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	return ServeRegistry(t, reg)
}

// startDataPlane exports, as a test app, the data-plane metrics the
// dashboards read: Istio's request metrics for traffic inside primary,
// from primary to west (failover), across two versions (a canary), and
// Envoy's outlier-detection metrics.
func startDataPlane(ctx context.Context, t *testing.T) string {
	t.Helper()
	mesh := NewMeshMetrics()
	ejected := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "envoy_cluster_outlier_detection_ejections_active", Help: "Envoy: ejected hosts."}, []string{"cluster_name"})
	enforced := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "envoy_cluster_outlier_detection_ejections_enforced_total", Help: "Envoy: enforced ejections."}, []string{"cluster_name"})
	mesh.Registry.MustRegister(ejected, enforced)
	const cl = "outbound|7070||echo.default.svc.cluster.local"
	tick := time.NewTicker(50 * time.Millisecond)
	go func() {
		defer tick.Stop()
		i := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			i++
			for _, r := range []Request{
				{DestCluster: "primary", DestVersion: "v1", Duration: 3 * time.Millisecond},
				{DestCluster: "primary", DestVersion: "v2", Duration: 4 * time.Millisecond, GRPCStatus: map[bool]int{true: 14}[i%10 == 0]},
				{DestCluster: "west", DestVersion: "v1", Duration: 40 * time.Millisecond},
			} {
				r.SourceWorkload, r.SourceNamespace, r.SourceCluster = "client", "default", "primary"
				r.Service, r.ServiceName, r.ServiceNamespace = "echo.default.svc.cluster.local", "echo", "default"
				r.DestWorkload, r.DestNamespace = "echo-"+r.DestVersion, "default"
				mesh.Observe(r)
			}
			ejected.WithLabelValues(cl).Set(float64(i % 2))
			if i%20 == 0 {
				enforced.WithLabelValues(cl).Inc()
			}
		}
	}()
	return mesh.Serve(t)
}
