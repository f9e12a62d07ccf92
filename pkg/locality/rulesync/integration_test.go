//go:build integration

package rulesync_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

const ns = "istio-system"

// TestWriterAgainstAPIServer runs the writer against a real API server with
// Istio's CRDs: it creates one rule per service, makes no write when
// nothing changed, undoes a hand edit of its rule, never touches a user's
// rule (one covering a host, one squatting a generated rule's name), keeps
// every rule while a member has not synced (creating only new hosts), and
// prunes only its own rules once every member has synced.
// startPrimary starts a real primary cluster with Istio's CRDs and the
// rules' namespace, and returns it with a context bounded for the test.
func startPrimary(t *testing.T) (*localcluster.Cluster, context.Context, kubernetes.Interface, dynamic.NamespaceableResourceInterface) {
	t.Helper()
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	c := env.Cluster("primary")
	ctx, cancel := context.WithTimeout(testenv.Context(t), 3*time.Minute)
	t.Cleanup(cancel)
	must(t, localistiod.InstallCRDs(ctx, c.Config))
	kube := kubernetes.NewForConfigOrDie(c.Config)
	drs := dynamic.NewForConfigOrDie(c.Config).Resource(rulesync.GVR)
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must(t, err)
	return c, ctx, kube, drs
}

func TestWriterAgainstAPIServer(t *testing.T) {
	c, ctx, kube, drs := startPrimary(t)
	var err error
	for _, n := range []struct{ name, region string }{{"node-a", "r1"}, {"node-b", "r2"}} {
		_, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name,
			Labels: map[string]string{topology.LabelRegion: n.region, topology.LabelZone: n.region + "-z"}}}, metav1.CreateOptions{})
		must(t, err)
	}
	for _, s := range []string{"echo", "echo2", "mine", "other"} {
		createService(ctx, t, kube, s)
	}
	// Users' rules: one covers mine's host; one has the name the rule for
	// "other" would get, but not the label.
	users := map[string]*unstructured.Unstructured{
		"default/user-mine": userRule("default", "user-mine", "mine.default.svc.cluster.local"),
		ns + "/" + locality.RuleName("default", "other"): userRule(ns, locality.RuleName("default", "other"), "unrelated.example.com"),
	}
	for _, u := range users {
		created, err := drs.Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
		must(t, err)
		u.SetResourceVersion(created.GetResourceVersion())
	}
	usersUntouched := func() {
		t.Helper()
		for key, u := range users {
			live, err := drs.Namespace(u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil || live.GetResourceVersion() != u.GetResourceVersion() {
				t.Errorf("user rule %s was touched: %v (resourceVersion %s, was %s)", key, err, live.GetResourceVersion(), u.GetResourceVersion())
			}
		}
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var srv *rulesync.Server
	w, err := topology.NewWatcher(map[string]*rest.Config{"primary": c.Config}, topology.WatcherOptions{Logger: quiet, OnChange: func() {
		if srv != nil {
			srv.Notify()
		}
	}})
	must(t, err)
	var memberDown atomic.Bool // a second member that has not synced
	reg := prometheus.NewRegistry()
	srv, err = rulesync.New(rulesync.Options{Config: c.Config, Snapshot: w.Snapshot, Logger: quiet, Registerer: reg,
		Members: func() map[string]bool {
			m := w.Clusters()
			if memberDown.Load() {
				m["remote-down"] = false
			}
			return m
		}})
	must(t, err)
	w.Start(ctx)
	go func() { _ = srv.Run(ctx) }()

	echoRule := locality.RuleName("default", "echo")
	echo2Rule := locality.RuleName("default", "echo2")
	waitRules(t, drs, echoRule, echo2Rule)
	live, err := drs.Namespace(ns).Get(ctx, echoRule, metav1.GetOptions{})
	must(t, err)
	if fm := live.GetManagedFields(); len(fm) == 0 || fm[0].Manager != rulesync.FieldManager {
		t.Errorf("field managers of %s: %+v, want %s", echoRule, fm, rulesync.FieldManager)
	}
	if failover, _, _ := unstructured.NestedSlice(live.Object, "spec", "trafficPolicy", "loadBalancer", "localityLbSetting", "failover"); len(failover) != 2 {
		t.Errorf("%s: failover %v, want r1→r2 and r2→r1", echoRule, failover)
	}
	testenv.Eventually(t, 30*time.Second, "the squatted name reported as a conflict", func() error {
		if st := srv.State(); len(st.Conflicts) != 1 || !strings.Contains(st.Conflicts[0], locality.RuleName("default", "other")) {
			return fmt.Errorf("conflicts %q", st.Conflicts)
		}
		return nil
	})
	t.Logf("conflict: %s", srv.State().Conflicts[0])
	usersUntouched()

	// A field the writer stops setting goes: echo asks for PreferClose (the
	// annotation istiod reads), so its rule keeps outlier detection only.
	// (A rule first written with Create has its fields owned by an Update
	// entry of the field manager, which server-side apply alone never
	// removes.)
	_, err = kube.CoreV1().Services("default").Patch(ctx, "echo", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+topology.AnnotationTrafficDistribution+`":"PreferClose"}}}`), metav1.PatchOptions{})
	must(t, err)
	testenv.Eventually(t, 30*time.Second, "echo's failover removed", func() error {
		live, err := drs.Namespace(ns).Get(ctx, echoRule, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lb, ok, _ := unstructured.NestedMap(live.Object, "spec", "trafficPolicy", "loadBalancer"); ok {
			return fmt.Errorf("%s still has loadBalancer %v", echoRule, lb)
		}
		if _, ok, _ := unstructured.NestedMap(live.Object, "spec", "trafficPolicy", "outlierDetection"); !ok {
			return fmt.Errorf("%s lost its outlier detection", echoRule)
		}
		return nil
	})

	// Steady state: no write, of the rules or of the published summary.
	waitHealth(t, kube, health.StateDegraded, "1 rule in conflict")
	// One sync first, so that what a sync already in flight (started by
	// the writer's own events) publishes lands before the snapshot.
	must(t, srv.Sync(ctx, time.Now()))
	before := writes(t, reg)
	cmBefore, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, health.ConfigMapName, metav1.GetOptions{})
	must(t, err)
	must(t, srv.Sync(ctx, time.Now()))
	must(t, srv.Sync(ctx, time.Now()))
	if after := writes(t, reg); after != before {
		t.Errorf("resync with nothing changed wrote %v times", after-before)
	}
	if cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, health.ConfigMapName, metav1.GetOptions{}); err != nil {
		t.Errorf("reading the summary ConfigMap after the resync: %v", err)
	} else if cm.ResourceVersion != cmBefore.ResourceVersion {
		t.Errorf("resync with nothing changed rewrote the summary ConfigMap:\nbefore %s\nafter  %s", cmBefore.Data[health.Key], cm.Data[health.Key])
	}
	t.Logf("writes to reach the steady state: %v; on resync: 0", before)

	// A hand edit of the generated rule is undone.
	_, err = drs.Namespace(ns).Patch(ctx, echoRule, types.MergePatchType, []byte(`{"spec":{"trafficPolicy":null}}`), metav1.PatchOptions{})
	must(t, err)
	testenv.Eventually(t, 30*time.Second, "hand edit undone", func() error {
		live, err := drs.Namespace(ns).Get(ctx, echoRule, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok, _ := unstructured.NestedMap(live.Object, "spec", "trafficPolicy"); !ok {
			return fmt.Errorf("%s has no trafficPolicy", echoRule)
		}
		return nil
	})

	// A member has not synced: echo2 gone from the translation keeps its
	// rule; a new service gets one.
	memberDown.Store(true)
	must(t, kube.CoreV1().Services("default").Delete(ctx, "echo2", metav1.DeleteOptions{}))
	createService(ctx, t, kube, "echo3")
	waitRules(t, drs, echoRule, echo2Rule, locality.RuleName("default", "echo3"))
	testenv.Eventually(t, 30*time.Second, "echo2's rule held", func() error {
		must(t, srv.Sync(ctx, time.Now()))
		if st := srv.State(); fmt.Sprint(st.Held) != "["+echo2Rule+"]" || !strings.Contains(st.HeldReason, "remote-down") {
			return fmt.Errorf("held %v (%s)", st.Held, st.HeldReason)
		}
		return nil
	})
	if _, err := drs.Namespace(ns).Get(ctx, echo2Rule, metav1.GetOptions{}); err != nil {
		t.Fatalf("%s withdrawn while a member had not synced: %v", echo2Rule, err)
	}
	// The published summary says so, as meshctl status reads it.
	v := waitHealth(t, kube, health.StateDegraded, "member remote-down not synced since")
	if !strings.Contains(v.Line, ": 1 rule held") {
		t.Errorf("health line %q does not count the held rule", v.Line)
	}
	t.Logf("published while a member is not synced: %s: %s", v.State, v.Line)

	// Every member synced: echo2's rule is pruned, users' rules stay.
	memberDown.Store(false)
	srv.Notify()
	testenv.Eventually(t, 30*time.Second, "echo2's rule pruned", func() error {
		_, err := drs.Namespace(ns).Get(ctx, echo2Rule, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("%s still there (%v)", echo2Rule, err)
		}
		return nil
	})
	waitRules(t, drs, echoRule, locality.RuleName("default", "echo3"))
	usersUntouched()
	// Once every member synced, the summary is healthy but for the
	// squatted name.
	v = waitHealth(t, kube, health.StateDegraded, "1 rule in conflict")
	if strings.Contains(v.Line, "not synced") || strings.Contains(v.Line, "held") {
		t.Errorf("health line %q after every member synced", v.Line)
	}
	t.Logf("published after the member synced: %s: %s", v.State, v.Line)
}

// waitHealth waits until the summary published in the primary, judged
// with its Lease as meshctl status does, has state and a line containing want.
func waitHealth(t *testing.T, kube kubernetes.Interface, state, want string) health.Verdict {
	t.Helper()
	var v health.Verdict
	testenv.Eventually(t, 30*time.Second, "published locality health "+state+": "+want, func() error {
		s, l, err := health.Read(t.Context(), kube, ns)
		if err != nil {
			return err
		}
		v = health.Judge(s, l, time.Now())
		if v.State != state || !strings.Contains(v.Line, want) {
			return fmt.Errorf("%s: %s", v.State, v.Line)
		}
		return nil
	})
	return v
}

// TestOneWriterByLease runs two replicas with one Lease: one leads and
// writes; when it stops, the other takes over and keeps the rules current.
func TestOneWriterByLease(t *testing.T) {
	c, ctx, kube, drs := startPrimary(t)
	var err error
	_, err = kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a",
		Labels: map[string]string{topology.LabelRegion: "r1", topology.LabelZone: "z1"}}}, metav1.CreateOptions{})
	must(t, err)
	createService(ctx, t, kube, "echo")

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	type replica struct {
		srv    *rulesync.Server
		reg    *prometheus.Registry
		cancel context.CancelFunc
	}
	var replicas []*replica
	for _, id := range []string{"a", "b"} {
		r := &replica{reg: prometheus.NewRegistry()}
		rctx, rcancel := context.WithCancel(ctx)
		r.cancel = rcancel
		w, err := topology.NewWatcher(map[string]*rest.Config{"primary": c.Config}, topology.WatcherOptions{Logger: quiet, OnChange: func() {
			if r.srv != nil {
				r.srv.Notify()
			}
		}})
		must(t, err)
		r.srv, err = rulesync.New(rulesync.Options{Config: c.Config, Snapshot: w.Snapshot, Members: w.Clusters, Logger: quiet, Registerer: r.reg,
			Lease: &rulesync.Lease{Namespace: ns, Name: "meshfleet-locality", Identity: id,
				Duration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}})
		must(t, err)
		w.Start(rctx)
		go func() { _ = r.srv.Run(rctx) }()
		replicas = append(replicas, r)
	}
	waitRules(t, drs, locality.RuleName("default", "echo"))
	var leader, follower *replica
	testenv.Eventually(t, 30*time.Second, "exactly one leader", func() error {
		a, b := replicas[0].srv.State().Leader, replicas[1].srv.State().Leader
		if a == b {
			return fmt.Errorf("leaders: a=%v b=%v", a, b)
		}
		leader, follower = replicas[0], replicas[1]
		if b {
			leader, follower = replicas[1], replicas[0]
		}
		return nil
	})
	if n := writes(t, follower.reg); n != 0 {
		t.Errorf("the replica without the Lease wrote %v times", n)
	}
	leader.cancel()
	start := time.Now()
	testenv.Eventually(t, 30*time.Second, "the other replica leads", func() error {
		if !follower.srv.State().Leader {
			return fmt.Errorf("not leading yet")
		}
		return nil
	})
	t.Logf("takeover after the leader stopped: %v", time.Since(start).Round(time.Millisecond))
	createService(ctx, t, kube, "echo2")
	waitRules(t, drs, locality.RuleName("default", "echo"), locality.RuleName("default", "echo2"))
	// The new writer published its state; once it stops, the Lease is
	// released and the summary reads as not running, not as healthy.
	newWriter := "a"
	if follower == replicas[1] {
		newWriter = "b"
	}
	waitHealth(t, kube, health.StateOK, "writer "+newWriter)
	follower.cancel()
	v := waitHealth(t, kube, health.StateNotRunning, "released by "+newWriter)
	t.Logf("after the last replica stopped: %s: %s", v.State, v.Line)
}

func createService(ctx context.Context, t *testing.T, kube kubernetes.Interface, name string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}
	_, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	must(t, err)
	ready, node := true, []string{"node-a", "node-b"}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	must(t, err)
	for i := range nodes.Items {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.18.9.%d", i+1)},
			NodeName: &node[i], Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	_, err = kube.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{})
	must(t, err)
}

func userRule(namespace, name, host string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec":     map[string]any{"host": host, "trafficPolicy": map[string]any{"tls": map[string]any{"mode": "ISTIO_MUTUAL"}}},
	}}
}

// waitRules waits until the generated rules in the namespace are exactly names.
func waitRules(t *testing.T, drs dynamic.NamespaceableResourceInterface, names ...string) {
	t.Helper()
	want := strings.Join(names, " ")
	testenv.Eventually(t, 30*time.Second, "generated rules "+want, func() error {
		list, err := drs.Namespace(ns).List(t.Context(), metav1.ListOptions{LabelSelector: locality.LabelManagedBy + "=" + locality.ManagedBy})
		if err != nil {
			return err
		}
		var got []string
		for _, u := range list.Items {
			got = append(got, u.GetName())
		}
		if strings.Join(got, " ") != want {
			return fmt.Errorf("rules %v", got)
		}
		return nil
	})
}

// writes sums meshfleet_locality_writes_total.
func writes(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "meshfleet_locality_writes_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// threeRegions creates nodes node-a, node-b and node-c in regions r1, r2
// and r3 and returns their names.
func threeRegions(ctx context.Context, t *testing.T, kube kubernetes.Interface) []string {
	t.Helper()
	nodes := []string{"node-a", "node-b", "node-c"}
	for i, n := range nodes {
		r := fmt.Sprintf("r%d", i+1)
		_, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n,
			Labels: map[string]string{topology.LabelRegion: r, topology.LabelZone: r + "-z"}}}, metav1.CreateOptions{})
		must(t, err)
	}
	return nodes
}

// writeSlice creates or replaces svc's EndpointSlice in default: one
// endpoint on each of nodes, all ready but the first unless r1.
func writeSlice(ctx context.Context, t *testing.T, kube kubernetes.Interface, nodes []string, svc string, r1 bool) {
	t.Helper()
	slices := kube.DiscoveryV1().EndpointSlices("default")
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i := range nodes {
		ready := i != 0 || r1
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.18.9.%d", i+1)},
			NodeName: &nodes[i], Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	live, err := slices.Get(ctx, svc+"-1", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = slices.Create(ctx, es, metav1.CreateOptions{})
		must(t, err)
		return
	}
	must(t, err)
	es.ResourceVersion = live.ResourceVersion
	_, err = slices.Update(ctx, es, metav1.UpdateOptions{})
	must(t, err)
}

// TestHoldDown runs the writer with a hold-down against a real API
// server: an update that changes only failover entries of regions served
// locally waits for it and then lands; a user's change during the wait is
// written at once, whole.
func TestHoldDown(t *testing.T) {
	c, ctx, kube, drs := startPrimary(t)
	nodes := threeRegions(ctx, t, kube)
	_, err := kube.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}, metav1.CreateOptions{})
	must(t, err)
	// setReady writes echo's slice: one endpoint per region, r1's ready or not.
	setReady := func(r1 bool) { t.Helper(); writeSlice(ctx, t, kube, nodes, "echo", r1) }
	setReady(true)

	reg := prometheus.NewRegistry()
	srv, err := pipeline.New(pipeline.Options{Clusters: map[string]*rest.Config{"primary": c.Config}, HoldDown: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	must(t, err)
	go func() { _ = srv.Run(ctx) }()

	echoRule := locality.RuleName("default", "echo")
	failover := func() string {
		live, err := drs.Namespace(ns).Get(ctx, echoRule, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		entries, _, _ := unstructured.NestedSlice(live.Object, "spec", "trafficPolicy", "loadBalancer", "localityLbSetting", "failover")
		var out []string
		for _, e := range entries {
			m, _ := e.(map[string]any)
			out = append(out, fmt.Sprintf("%v>%v", m["from"], m["to"]))
		}
		return strings.Join(out, " ")
	}
	waitFailover := func(what, want string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, what+": failover "+want, func() error {
			if got := failover(); got != want {
				return fmt.Errorf("failover %s", got)
			}
			return nil
		})
	}
	waitDeferred := func(what, want string) { t.Helper(); waitDeferredRules(t, srv.Server, what, want) }
	const healthy, r1Down = "r1>r2 r2>r1 r3>r1", "r1>r2 r2>r3 r3>r2"
	waitFailover("start", healthy)

	// r1's endpoint goes not ready: r2's and r3's targets move from r1,
	// but r2 and r3 are served in their own regions. The update waits,
	// then lands.
	setReady(false)
	waitDeferred("r1 not ready", echoRule)
	if got := failover(); got != healthy {
		t.Errorf("deferred update written: failover %s, want still %s", got, healthy)
	}
	waitFailover("after the hold-down", r1Down)
	waitDeferred("after the hold-down", "")

	// r1 ready again, with a hold-down far longer than the test waits: the
	// update waits; a user's annotation of echo meanwhile is written at
	// once, with the update that waited.
	srv.SetHoldDown(time.Hour)
	setReady(true)
	waitDeferred("r1 ready again", echoRule)
	_, err = kube.CoreV1().Services("default").Patch(ctx, "echo", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+locality.AnnotationFailover+`":"r1=r3"}}}`), metav1.PatchOptions{})
	must(t, err)
	waitFailover("user's annotation", "r1>r3 r2>r1 r3>r1")
	waitDeferred("user's annotation", "")
	if n := counter(t, reg, "meshfleet_locality_updates_deferred_total"); n != 2 {
		t.Errorf("updates deferred: %v, want 2", n)
	}

	// Sync (tests, benchmarks) writes at once: r1 not ready again.
	setReady(false)
	waitDeferred("r1 not ready again", echoRule)
	must(t, srv.Sync(ctx, time.Now()))
	waitFailover("Sync", "r1>r3 r2>r3 r3>r2")
}

// waitDeferredRules waits until the rules srv holds back are want
// (space-separated names).
func waitDeferredRules(t *testing.T, srv *rulesync.Server, what, want string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, what+": deferred ["+want+"]", func() error {
		if got := strings.Join(srv.State().Deferred, " "); got != want {
			return fmt.Errorf("deferred [%s]", got)
		}
		return nil
	})
}

// counter is the value of the counter named name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestHoldDownGroupMove: a Service that leaves its namespace rule (its own
// rule created) and rejoins it (deleted) only because readiness moved
// targets no request uses now waits for the hold-down both ways, and the
// namespace rule stays throughout.
func TestHoldDownGroupMove(t *testing.T) {
	c, ctx, kube, drs := startPrimary(t)
	nodes := threeRegions(ctx, t, kube)
	// setReady writes svc's slice: one endpoint per region, r1's ready or not.
	setReady := func(svc string, r1 bool) { t.Helper(); writeSlice(ctx, t, kube, nodes, svc, r1) }
	for _, svc := range []string{"echo-a", "echo-b", "echo-c"} {
		_, err := kube.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: "default"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}, metav1.CreateOptions{})
		must(t, err)
		setReady(svc, true)
	}
	srv, err := pipeline.New(pipeline.Options{Clusters: map[string]*rest.Config{"primary": c.Config}, GroupMin: 2, HoldDown: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry()})
	must(t, err)
	go func() { _ = srv.Run(ctx) }()

	group, own := rulesync.GroupName("default"), locality.RuleName("default", "echo-a")
	waitRules(t, drs, group)
	waitDeferred := func(what, want string) { t.Helper(); waitDeferredRules(t, srv.Server, what, want) }
	rules := func() string {
		list, err := drs.Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: locality.LabelManagedBy + "=" + locality.ManagedBy})
		must(t, err)
		var got []string
		for _, u := range list.Items {
			got = append(got, u.GetName())
		}
		return strings.Join(got, " ")
	}

	// echo-a's r1 endpoint goes not ready: its r2 and r3 entries move from
	// r1, so it leaves the namespace rule, which covers it meanwhile.
	setReady("echo-a", false)
	waitDeferred("echo-a leaves", own)
	if got := rules(); got != group {
		t.Errorf("while echo-a's own rule is deferred: rules %s, want %s", got, group)
	}
	waitRules(t, drs, group, own)
	waitDeferred("echo-a's rule created", "")
	// r1 ready again: it rejoins; its own rule goes after the hold-down.
	setReady("echo-a", true)
	waitDeferred("echo-a rejoins", own)
	if got := rules(); got != group+" "+own {
		t.Errorf("while echo-a's delete is deferred: rules %s, want %s", got, group+" "+own)
	}
	waitRules(t, drs, group)
	waitDeferred("echo-a's rule deleted", "")
}
