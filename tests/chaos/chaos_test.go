//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/internal/sandbox"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestMain re-executes the test binary in a private network namespace, where
// the demo's servers listen on 198.18.0.0/15 addresses.
func TestMain(m *testing.M) {
	os.Exit(netns.Main(m.Run, sandbox.Addrs()...))
}

const (
	namespace = "istio-system"
	// convergeTimeout bounds the wait after a restart; the time it took is
	// printed, not asserted.
	convergeTimeout = 3 * time.Minute
	// remoteOutage is how long a remote's API server stays down: longer
	// than the operator's remote resync in the sandbox (30 s), so that both
	// the operator and istiod notice.
	remoteOutage = 35 * time.Second
	// localityOutage is longer than istiod's longest reconnect backoff
	// (60 s) to its config sources.
	localityOutage = 65 * time.Second
)

// fault is one row of the table: what to break, how long to keep it broken,
// and how to repair it.
type fault struct {
	name string
	// inject breaks the component; during runs while it is down (may be nil).
	inject, during func(r *result) error
	hold           time.Duration
	// recover repairs it; ready is what converged means beyond the rules
	// being back and the traffic home (may be nil).
	recover func(r *result) error
	ready   func() error
	// endpoints marks faults of the endpoints themselves, whose traffic is
	// meant to leave its zone.
	endpoints bool
}

// result is what one fault did.
type result struct {
	name       string
	calls      int
	errors     int
	inZone     float64
	disruption time.Duration
	lost       []string
	converge   time.Duration
	converged  bool
	conditions string
	notes      []string
	endpoints  bool
}

func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

type suite struct {
	t        *testing.T
	ctx      context.Context
	sb       *sandbox.Sandbox
	c        client.Client
	baseline map[string]bool
}

// TestChaos kills and restarts each component in turn while the demo's
// clients call, prints the table and asserts it.
func TestChaos(t *testing.T) {
	ctx := testenv.Context(t)
	dir := filepath.Join(t.TempDir(), "sandbox")
	start := time.Now()
	sb, err := sandbox.Up(ctx, sandbox.Options{Dir: dir, Remotes: 2, Progress: testWriter{t}})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"operator.log", "locality.log", "tunnel.log", "istiod/istiod.log"} {
				t.Logf("last lines of %s:\n%s", f, localproc.TailFile(filepath.Join(dir, f), 15))
			}
		}
		if err := sb.Down(); err != nil {
			t.Errorf("sandbox down: %v", err)
		}
	})
	t.Logf("sandbox up in %v", time.Since(start).Round(time.Second))
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{t: t, ctx: ctx, sb: sb}
	if s.c, err = client.New(sb.Primary().Config, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	s.waitSteady("start")
	if s.baseline, err = framework.GeneratedRules(ctx, sb.Istiod.HTTPAddr); err != nil || len(s.baseline) == 0 {
		t.Fatalf("no generated DestinationRule in istiod (%v): the locality server's rules never arrived", err)
	}
	t.Logf("baseline: istiod holds %d generated rules: %v", len(s.baseline), keys(s.baseline))

	var results []*result
	for _, f := range s.faults() {
		results = append(results, s.run(f))
	}
	s.report(results)
}

// faults is the table of faults, one component at a time. The row that
// needs istiod to start while the locality server is down comes last but
// one, and repairs istiod before the next.
func (s *suite) faults() []fault {
	kill := func(name string) func(*result) error {
		return func(r *result) error {
			got, err := s.sb.Kill(name)
			if err == nil && got != name {
				r.note("killed %s", got)
			}
			return err
		}
	}
	restart := func(name string) func(*result) error {
		return func(*result) error { _, err := s.sb.Restart(s.ctx, name); return err }
	}
	zoneFailover := func(r *result) error {
		start := time.Now()
		if err := s.sb.SetZoneReady(s.ctx, "eu-west-a", false); err != nil {
			return err
		}
		if err := s.poll(time.Minute, func() error { return allIn(s.sb, "eu-west-a", "eu-west-b") }); err != nil {
			return fmt.Errorf("traffic of eu-west-a did not fail over to eu-west-b: %w", err)
		}
		r.note("failover to eu-west-b after %v", time.Since(start).Round(10*time.Millisecond))
		return nil
	}
	restoreZone := func(*result) error { return s.sb.SetZoneReady(s.ctx, "eu-west-a", true) }
	return []fault{
		{name: "zone eu-west-a fails (locality server up)", inject: zoneFailover, recover: restoreZone, endpoints: true},
		{name: "locality server", inject: kill(sandbox.ComponentLocality), hold: localityOutage, recover: restart(sandbox.ComponentLocality),
			ready: s.newRuleArrives()},
		{name: "active tunnel server", inject: kill(sandbox.ComponentTunnelServer), hold: 10 * time.Second,
			during: func(r *result) error {
				// The standby takes the Lease once the killed server's expires.
				start := time.Now()
				return s.poll(time.Minute, func() error {
					for _, c := range s.sb.Components() {
						if strings.HasPrefix(c.Name, sandbox.ComponentTunnelServer) && strings.HasPrefix(c.Detail, "active") {
							r.note("%s took the Lease %v after the kill", c.Name, time.Since(start).Round(10*time.Millisecond))
							return nil
						}
					}
					return errors.New("no tunnel server holds the Lease")
				})
			},
			recover: restart(sandbox.ComponentTunnelServer), ready: s.remotesReady},
		{name: "one agent of remote-1", inject: kill(sandbox.ComponentAgent + "/remote-1"), hold: 10 * time.Second,
			recover: restart(sandbox.ComponentAgent + "/remote-1")},
		{name: "istiod", inject: kill(sandbox.ComponentIstiod), hold: 5 * time.Second, recover: restart(sandbox.ComponentIstiod)},
		{name: "kube-apiserver of remote-1", inject: kill(sandbox.ComponentAPIServer + "/remote-1"), hold: remoteOutage,
			recover: restart(sandbox.ComponentAPIServer + "/remote-1"), ready: s.remotesReady},
		{name: "etcd of remote-2", inject: kill(sandbox.ComponentEtcd + "/remote-2"), hold: 15 * time.Second,
			recover: restart(sandbox.ComponentEtcd + "/remote-2"), ready: s.remotesReady},
		{name: "operator mid-install", inject: s.midInstall, hold: 5 * time.Second,
			recover: restart(sandbox.ComponentOperator), ready: s.istioReady},
		{name: "operator mid-join", inject: s.midJoin, hold: 5 * time.Second,
			recover: restart(sandbox.ComponentOperator), ready: s.remotesReady},
		{name: "zone eu-west-a fails (locality server down)",
			inject: func(r *result) error {
				if err := kill(sandbox.ComponentLocality)(r); err != nil {
					return err
				}
				return zoneFailover(r)
			},
			recover: func(r *result) error {
				if err := restoreZone(r); err != nil {
					return err
				}
				return restart(sandbox.ComponentLocality)(r)
			}, ready: s.newRuleArrives(), endpoints: true},
		{name: "istiod restarts while the locality server is down", inject: kill(sandbox.ComponentLocality),
			during: func(r *result) error {
				if _, err := s.sb.Kill(sandbox.ComponentIstiod); err != nil {
					return err
				}
				if _, err := s.sb.Restart(s.ctx, sandbox.ComponentIstiod); err != nil {
					// istiod is not serving: it holds none of the rules.
					r.lost = keys(s.baseline)
					r.note("istiod did not come up: %s", firstLine(err.Error()))
					r.note("istiod log: %s", lastMatching(s.sb.Istiod.LogPath, "MCP", "configSource", "error"))
				}
				return nil
			},
			hold: 5 * time.Second,
			recover: func(r *result) error {
				if err := restart(sandbox.ComponentLocality)(r); err != nil {
					return err
				}
				if !s.sb.Istiod.Running() {
					r.note("istiod restarted once the locality server was back")
					return restart(sandbox.ComponentIstiod)(r)
				}
				return nil
			}, ready: s.newRuleArrives()},
	}
}

// run injects one fault, holds it, repairs it and waits for convergence.
func (s *suite) run(f fault) *result {
	t := s.t
	r := &result{name: f.name, endpoints: f.endpoints}
	s.waitSteady(f.name)
	t.Logf("── %s", f.name)
	before := totals(s.sb)
	w := startWatch(s.ctx, s.sb, s.c, s.baseline)
	if err := f.inject(r); err != nil {
		r.note("inject: %v", err)
	}
	if f.during != nil {
		if err := f.during(r); err != nil {
			r.note("during: %v", err)
		}
	}
	time.Sleep(f.hold)
	restarted := time.Now()
	if err := f.recover(r); err != nil {
		r.note("recover: %s", firstLine(err.Error()))
	}
	err := s.poll(convergeTimeout, func() error {
		rules, err := framework.GeneratedRules(s.ctx, s.sb.Istiod.HTTPAddr)
		if err != nil {
			return fmt.Errorf("istiod: %w", err)
		}
		for n := range s.baseline {
			if !rules[n] {
				return fmt.Errorf("rule %s not in istiod", n)
			}
		}
		if err := allHome(s.sb); err != nil {
			return err
		}
		if f.ready != nil {
			return f.ready()
		}
		return nil
	})
	r.converge, r.converged = time.Since(restarted), err == nil
	if err != nil {
		r.note("not converged after %v: %v", convergeTimeout, err)
	}
	w.end()
	d := totals(s.sb).minus(before)
	r.calls, r.errors, r.inZone = d.calls, d.errors, d.inZonePct()
	r.disruption = w.disruption()
	r.lost = union(r.lost, w.lostRules())
	r.conditions = w.conditionSummary()
	t.Logf("   %d calls, %d errors, %.1f%% in zone, disruption %v, %d rules lost, converged in %v; %s",
		r.calls, r.errors, r.inZone, r.disruption.Round(time.Millisecond), len(r.lost), r.converge.Round(time.Millisecond), strings.Join(r.notes, "; "))
	return r
}

// report prints the table and asserts each row.
func (s *suite) report(results []*result) {
	t := s.t
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "component\tRPC errors\tcalls\tin-zone %\tdisruption\trules lost\tconverge time")
	for _, r := range results {
		conv := r.converge.Round(10 * time.Millisecond).String()
		if !r.converged {
			conv = "did not converge"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%v\t%d\t%s\n", r.name, r.errors, r.calls, r.inZone, r.disruption.Round(10*time.Millisecond), len(r.lost), conv)
	}
	_ = tw.Flush()
	b.WriteString("\noperator conditions that were not True during each fault, and notes:\n")
	for _, r := range results {
		fmt.Fprintf(&b, "  %s: %s\n", r.name, r.conditions)
		for _, n := range r.notes {
			fmt.Fprintf(&b, "      %s\n", n)
		}
	}
	t.Logf("chaos table:\n%s", b.String())
	fmt.Println(b.String())
	for _, r := range results {
		if len(r.lost) > 0 {
			t.Errorf("%s: generated rules disappeared from istiod: %v", r.name, r.lost)
		}
		if !r.endpoints && r.inZone < 99 {
			t.Errorf("%s: %.1f%% of calls answered in the client's zone, want ≥ 99%%", r.name, r.inZone)
		}
		if !r.converged {
			t.Errorf("%s: did not converge within %v after the restart: %s", r.name, convergeTimeout, strings.Join(r.notes, "; "))
		}
	}
}

// waitSteady waits until the traffic is home and every component runs.
func (s *suite) waitSteady(step string) {
	s.t.Helper()
	err := s.poll(2*time.Minute, func() error {
		for _, c := range s.sb.Components() {
			if !c.Running {
				return fmt.Errorf("%s is not running", c.Name)
			}
		}
		return allHome(s.sb)
	})
	if err != nil {
		s.t.Fatalf("before %s: not steady: %v", step, err)
	}
}

// midInstall changes the Istio resource (istiod's log level, so the
// operator renders and applies again) and kills the operator at once.
func (s *suite) midInstall(r *result) error {
	ist := &v1beta1.Istio{}
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: namespace, Name: "istio"}, ist); err != nil {
		return err
	}
	ist.Spec.Logging.Level = "default:debug"
	if err := s.c.Update(s.ctx, ist); err != nil {
		return err
	}
	_, err := s.sb.Kill(sandbox.ComponentOperator)
	r.note("Istio generation %d written; operator killed", ist.Generation)
	return err
}

// istioReady is the Istio resource Ready for its current generation.
func (s *suite) istioReady() error {
	ist := &v1beta1.Istio{}
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: namespace, Name: "istio"}, ist); err != nil {
		return err
	}
	if ist.Status.ObservedGeneration != ist.Generation || !meta.IsStatusConditionTrue(ist.Status.Conditions, v1beta1.ConditionReady) {
		return fmt.Errorf("Istio generation %d, observed %d, phase %s", ist.Generation, ist.Status.ObservedGeneration, ist.Status.Phase)
	}
	return nil
}

// midJoin starts a third remote (its own etcd and API server), joins it
// with a kubeconfig Secret, and kills the operator as soon as it has begun.
func (s *suite) midJoin(r *result) error {
	t := s.t
	bins, err := localcluster.DefaultBinaries()
	if err != nil {
		return err
	}
	dir := filepath.Join(t.TempDir(), "remote-3")
	etcd, err := localcluster.StartEtcd(s.ctx, filepath.Join(dir, "etcd"), bins.Etcd)
	if err != nil {
		return err
	}
	rc, err := localcluster.StartCluster(s.ctx, etcd, bins, localcluster.ClusterOptions{Name: "remote-3", Dir: dir})
	if err != nil {
		_ = etcd.Stop()
		return err
	}
	t.Cleanup(func() { _ = rc.Stop(); _ = etcd.Stop() })
	kc, err := os.ReadFile(rc.Kubeconfig)
	if err != nil {
		return err
	}
	secret := install.KubeconfigSecret(namespace, "remote-3-kubeconfig", kc)
	if err := s.c.Create(s.ctx, secret); err != nil {
		return err
	}
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "remote-3", Namespace: namespace},
		Spec: v1beta1.RemoteIstioSpec{PilotAddress: "localhost", KubeconfigSecretRef: &corev1.LocalObjectReference{Name: secret.Name}}}
	if err := s.c.Create(s.ctx, ri); err != nil {
		return err
	}
	// Kill the operator as soon as it has begun writing into the remote
	// (its istio-system namespace exists there), before the join is done.
	remote := kubernetes.NewForConfigOrDie(rc.Config)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := remote.CoreV1().Namespaces().Get(s.ctx, namespace, metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the operator wrote nothing into remote-3 within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err = s.sb.Kill(sandbox.ComponentOperator)
	got := &v1beta1.RemoteIstio{}
	_ = s.c.Get(s.ctx, client.ObjectKeyFromObject(ri), got)
	objs, _ := remote.CoreV1().ConfigMaps(namespace).List(s.ctx, metav1.ListOptions{})
	r.note("operator killed with RemoteIstio remote-3 at [%s], %d ConfigMaps in its istio-system", conditionsOf(got.Status.Conditions), len(objs.Items))
	return err
}

// newRuleArrives returns a readiness check that the whole rule pipeline
// works again: on its first call it creates a new Service (with a ready
// endpoint) in remote-1, and it is satisfied once istiod holds the
// DestinationRule the locality server generates for it.
func (s *suite) newRuleArrives() func() error {
	var name string
	return func() error {
		if name == "" {
			probes++
			name = fmt.Sprintf("probe-%d", probes)
			remote := kubernetes.NewForConfigOrDie(s.sb.Clusters[1].Config)
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}
			if _, err := remote.CoreV1().Services("demo").Create(s.ctx, svc, metav1.CreateOptions{}); err != nil {
				name = ""
				return fmt.Errorf("create Service demo/probe: %w", err)
			}
			ready, port := true, int32(7070)
			es := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "demo", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				// Never called: the address only makes the Service one with endpoints.
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.18.10.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
				Ports:     []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: &port}},
			}
			if _, err := remote.DiscoveryV1().EndpointSlices("demo").Create(s.ctx, es, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create EndpointSlice demo/%s: %w", name, err)
			}
		}
		rules, err := framework.GeneratedRules(s.ctx, s.sb.Istiod.HTTPAddr)
		if err != nil {
			return err
		}
		// Rules are written into the control plane's namespace.
		if want := "istio-system/" + locality.RuleName("demo", name); !rules[want] {
			return fmt.Errorf("the rule %s for a new Service has not reached istiod", want)
		}
		return nil
	}
}

// probes numbers the Services newRuleArrives creates.
var probes int

func ptr[T any](v T) *T { return &v }

// remotesReady is every RemoteIstio Ready and Connected.
func (s *suite) remotesReady() error {
	var list v1beta1.RemoteIstioList
	if err := s.c.List(s.ctx, &list); err != nil {
		return err
	}
	for _, ri := range list.Items {
		if !meta.IsStatusConditionTrue(ri.Status.Conditions, v1beta1.ConditionReady) ||
			!meta.IsStatusConditionTrue(ri.Status.Conditions, v1beta1.ConditionConnected) ||
			ri.Status.ObservedGeneration != ri.Generation {
			return fmt.Errorf("RemoteIstio %s: %s", ri.Name, conditionsOf(ri.Status.Conditions))
		}
	}
	return nil
}

// poll calls f every 100 ms until it returns nil or timeout passes.
func (s *suite) poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || s.ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
