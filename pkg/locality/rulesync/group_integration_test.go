//go:build integration

package rulesync_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestGroupedRulesAgainstAPIServer runs the server with GroupMin 3 against
// a real API server: three alike Services get one namespace-wide rule; a
// Service turned off moves the namespace to per-Service rules (the off one
// gets none: two are too few to share) and back; with a fourth, the off
// one gets an empty rule of its own beside the namespace rule; and, in
// every state the API server passed through (read from a watch, in
// order), every Service that should have a rule was covered by one — the
// namespace rule goes only after the rules that replace it exist, and the
// other way round.
func TestGroupedRulesAgainstAPIServer(t *testing.T) {
	c, ctx, kube, drs := startPrimary(t)
	for _, n := range []struct{ name, region string }{{"node-a", "r1"}, {"node-b", "r2"}} {
		_, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name,
			Labels: map[string]string{topology.LabelRegion: n.region, topology.LabelZone: n.region + "-z"}}}, metav1.CreateOptions{})
		must(t, err)
	}
	for _, s := range []string{"echo-a", "echo-b", "echo-c"} {
		createService(ctx, t, kube, s)
	}

	// Every state of the server's rules, in the order the API server made them.
	w, err := drs.Namespace(ns).Watch(ctx, metav1.ListOptions{LabelSelector: locality.LabelManagedBy + "=" + locality.ManagedBy})
	must(t, err)
	var (
		mu     sync.Mutex
		states [][]string
	)
	go func() {
		cur := map[string]bool{}
		for ev := range w.ResultChan() {
			o, ok := ev.Object.(metav1.Object)
			if !ok {
				continue
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				cur[o.GetName()] = true
			case watch.Deleted:
				delete(cur, o.GetName())
			}
			mu.Lock()
			states = append(states, slices.Sorted(maps.Keys(cur)))
			mu.Unlock()
		}
	}()
	t.Cleanup(w.Stop)

	srvCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	srv, err := pipeline.New(pipeline.Options{Clusters: map[string]*rest.Config{"primary": c.Config}, GroupMin: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry()})
	must(t, err)
	go func() { _ = srv.Run(srvCtx) }()

	group := rulesync.GroupName("default")
	waitRules(t, drs, group)
	live, err := drs.Namespace(ns).Get(ctx, group, metav1.GetOptions{})
	must(t, err)
	if host := live.Object["spec"].(map[string]any)["host"]; host != "*.default.svc.cluster.local" {
		t.Errorf("%s: host %v, want *.default.svc.cluster.local", group, host)
	}
	for _, d := range srv.State().Decisions {
		if d.Service != "default/kubernetes" && (d.Rule == nil || d.Rule.Metadata.Name != group) {
			t.Errorf("the decision for %s does not name the namespace rule: %+v", d.Service, d)
		}
	}

	setOff := func(off bool) {
		t.Helper()
		svc, err := kube.CoreV1().Services("default").Get(ctx, "echo-c", metav1.GetOptions{})
		must(t, err)
		if off {
			svc.Annotations = map[string]string{locality.AnnotationLocality: "off"}
		} else {
			svc.Annotations = nil
		}
		_, err = kube.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{})
		must(t, err)
	}
	a, b := locality.RuleName("default", "echo-a"), locality.RuleName("default", "echo-b")
	setOff(true)
	waitRules(t, drs, a, b)
	setOff(false)
	waitRules(t, drs, group)

	// With a fourth alike Service, echo-c turned off leaves three sharing
	// the namespace rule, which stays; echo-c gets an empty rule that
	// keeps the wildcard from it, and loses it when turned on again.
	createService(ctx, t, kube, "echo-d")
	waitRules(t, drs, group)
	shield := locality.RuleName("default", "echo-c")
	setOff(true)
	waitRules(t, drs, group, shield)
	live, err = drs.Namespace(ns).Get(ctx, shield, metav1.GetOptions{})
	must(t, err)
	if spec := live.Object["spec"]; !reflect.DeepEqual(spec, map[string]any{"host": "echo-c.default.svc.cluster.local"}) {
		t.Errorf("%s: spec %v, want the host alone", shield, spec)
	}
	setOff(false)
	waitRules(t, drs, group)

	// No state left echo-a or echo-b without a rule once the first existed.
	testenv.Eventually(t, 10*time.Second, "the watch has seen the last state", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(states) == 0 || !slices.Equal(states[len(states)-1], []string{group}) {
			return fmt.Errorf("states %v", states)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i, st := range states {
		has := func(n string) bool { return slices.Contains(st, n) }
		if !has(group) && !(has(a) && has(b)) {
			t.Errorf("state %d of %d: rules %v leave a Service without a rule (all states: %v)", i+1, len(states), st, states)
		}
	}
}
