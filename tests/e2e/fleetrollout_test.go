//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestFleetRolloutNackedRevision: a primary and two remotes, a fleet
// rollout with batches canary=[remote1] then wave-1=[remote2] (the primary
// moves last) gated on istiod readiness and xDS ACKs (gate.xds). Each
// revision runs as a real istiod (pilot-discovery with REVISION=<rev>);
// each cluster has a real grpc-go xDS client that sends RPCs continuously
// to the istiod its default tag's webhook calls (a workload restarted onto
// the tag). The bad revision 1-30-3 serves a DestinationRule labelled
// istio.io/rev=1-30-3 (so only that revision serves it) asking for Maglev,
// which grpc-go rejects: the canary's client NACKs, the gate moves the
// canary back at once with the NACK in the reason, and the clients of the
// other batches fail no RPC. Without the rule the same revision rolls
// through every batch.
func TestFleetRolloutNackedRevision(t *testing.T) {
	remotes := []string{"remote1", "remote2"}
	debug := map[string]string{} // filled below, before any batch gates
	const timeout = 60
	spec := func(v string) v1beta1.IstioSpec {
		var s v1beta1.IstioSpec
		if err := json.Unmarshal([]byte(fmt.Sprintf(`{"version":%q,"clusterName":"primary","multiCluster":{"mode":"flatNetwork"},
			"updateStrategy":{"type":"RevisionBased","inactiveRevisionDeletionGracePeriodSeconds":600,
			"rollout":{"batches":[{"name":"canary","clusters":["remote1"]},{"name":"wave-1","clusters":["remote2"]}],
			"gate":{"bakeSeconds":3,"timeoutSeconds":%d,"xds":{"minProxies":1}}}}}`, v, timeout)), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	m := framework.StartMesh(t, framework.MeshOptions{Remotes: remotes, Spec: spec("1.29.6"), PilotAddress: "203.0.113.10",
		Operator: operator.Options{IstiodDebugAddresses: debug}})
	ctx := t.Context()
	for _, r := range remotes {
		m.Join(t, r, "")
	}
	m.RollOut(t, framework.Primary)

	createNodes(ctx, t, m.Kube[framework.Primary], workloads)
	createEchoService(ctx, t, m.Kube[framework.Primary], workloads)
	mustCreate(t, "endpointslice default/echo-1", func() error {
		_, err := m.Kube[framework.Primary].DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice(workloads, nil), metav1.CreateOptions{})
		return err
	})
	for _, w := range workloads {
		startEchoServer(t, w.addr, echoPort)
	}

	// One real istiod per revision, both up before the rollout starts.
	istiods := map[string]*localistiod.Istiod{}
	for _, rev := range []string{"1-29-6", "1-30-3"} {
		istiods[rev] = framework.StartIstiod(t, localistiod.Options{
			Kubeconfig: m.Env.Cluster(framework.Primary).Kubeconfig,
			Dir:        filepath.Join(m.Env.Dir, "istiod-"+rev),
			ClusterID:  framework.Primary,
			Env:        []string{"REVISION=" + rev, "POD_NAME=istiod-" + rev},
		})
		debug[rev] = istiods[rev].MonitoringAddr
	}

	// The bad revision's config: only istiod-1-30-3 serves it.
	c := m.C[framework.Primary]
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"metadata": map[string]any{"name": "echo-maglev", "namespace": "default", "labels": map[string]any{"istio.io/rev": "1-30-3"}},
		"spec": map[string]any{"host": echoHost, "trafficPolicy": map[string]any{"loadBalancer": map[string]any{
			"consistentHash": map[string]any{"maglev": map[string]any{"tableSize": int64(65537)}, "useSourceIp": true}}}},
	}}
	if err := c.Create(ctx, bad); err != nil {
		t.Fatalf("creating the bad revision's DestinationRule: %v", err)
	}

	clients := map[string]*fleetClient{}
	for i, cl := range []string{framework.Primary, "remote1", "remote2"} {
		clients[cl] = startFleetClient(t, m, cl, fmt.Sprintf("198.18.0.%d", 20+i), istiods)
	}
	for cl, fc := range clients {
		fc.waitOK(t, cl, "1-29-6")
	}

	// setVersion retries on conflict: the operator writes the resource too
	// (status, the rollout's annotations) between the read and the update.
	setVersion := func(v string) {
		t.Helper()
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			ist := &v1beta1.Istio{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: framework.Namespace, Name: "istio"}, ist); err != nil {
				return err
			}
			ist.Spec = spec(v)
			return c.Update(ctx, ist)
		}); err != nil {
			t.Fatalf("setting Istio istio's version to %s: %v", v, err)
		}
	}
	rollout := func(what string, done func(*v1beta1.RolloutStatus) bool) *v1beta1.RolloutStatus {
		t.Helper()
		var st *v1beta1.RolloutStatus
		testenv.Eventually(t, 3*timeout*time.Second, what, func() error {
			m.RollOut(t, framework.Primary) // istiod-<rev> Deployments: the real istiods above serve them
			ist := &v1beta1.Istio{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: framework.Namespace, Name: "istio"}, ist); err != nil {
				return err
			}
			if st = ist.Status.Rollout; st == nil || !done(st) {
				return fmt.Errorf("status.rollout = %+v", st)
			}
			return nil
		})
		return st
	}

	// 1. The bad revision.
	for _, fc := range clients {
		fc.reset()
	}
	start := time.Now()
	setVersion("1.30.3")
	st := rollout("the canary rolled back on its client's NACK", func(st *v1beta1.RolloutStatus) bool {
		return st.To == "1-30-3" && st.Phase == "Halted" && st.Batches[0].Phase == "RolledBack"
	})
	t.Logf("bad revision, %v:\n%s", time.Since(start).Round(time.Second), tagrollout.StatusTable(st))
	if b := st.Batches[0]; !strings.Contains(b.Reason, "NACKed the config of istiod-1-30-3: proxy client-remote1.default (cluster remote1) NACKed Cluster") ||
		b.DecidedAt.Sub(b.MovedAt.Time) >= timeout*time.Second {
		t.Errorf("canary: %+v; want rolled back before the timeout on remote1's NACK", b)
	}
	if st.Batches[1].Phase != "Pending" {
		t.Errorf("wave-1 %s; want never moved", st.Batches[1].Phase)
	}
	clients["remote1"].waitOK(t, "remote1", "1-29-6")
	for _, cl := range []string{framework.Primary, "remote2"} {
		ok, failed, revs := clients[cl].counts()
		t.Logf("client of %s during the bad rollout: %d RPCs OK, %d failed, on %s", cl, ok, failed, revs)
		if failed > 0 || ok == 0 || revs != "1-29-6" {
			t.Errorf("client of %s during the bad rollout: %d RPCs OK, %d failed, on %s; want none failed, on 1-29-6", cl, ok, failed, revs)
		}
	}
	ok, failed, revs := clients["remote1"].counts()
	t.Logf("canary's client during the bad rollout: %d RPCs OK, %d failed, on %s", ok, failed, revs)

	// 2. Back to 1.29.6 (the halted rollout ends), the bad config goes,
	// and the same revision rolls through every batch.
	setVersion("1.29.6")
	rollout("the halted rollout ended", func(st *v1beta1.RolloutStatus) bool { return st.Phase == "Done" && st.From == "1-29-6" })
	if err := c.Delete(ctx, bad); err != nil {
		t.Fatal(err)
	}
	for _, fc := range clients {
		fc.reset()
	}
	start = time.Now()
	setVersion("1.30.3")
	st = rollout("every batch passed", func(st *v1beta1.RolloutStatus) bool {
		// Not the halted rollout's record (Done since step 2): every batch passed.
		return st.To == "1-30-3" && st.From == "1-29-6" && st.Phase == "Done" && st.Batches[0].Phase == "Passed" && st.Batches[1].Phase == "Passed"
	})
	t.Logf("healthy revision, %v:\n%s", time.Since(start).Round(time.Second), tagrollout.StatusTable(st))
	for _, b := range st.Batches {
		if b.Phase != "Passed" || !strings.Contains(b.Reason, "1 proxies ACKed") {
			t.Errorf("batch %s: %s, %q; want passed with its client's ACK", b.Name, b.Phase, b.Reason)
		}
	}
	for cl, fc := range clients {
		fc.waitOK(t, cl, "1-30-3")
		ok, failed, _ := fc.counts()
		t.Logf("client of %s during the healthy rollout: %d RPCs OK, %d failed", cl, ok, failed)
		if failed > 0 {
			t.Errorf("client of %s: %d RPCs failed during the healthy rollout", cl, failed)
		}
	}
}

// fleetClient is a grpc-go xDS client of one cluster that sends an RPC
// every 50 ms to the istiod revision its cluster's default tag calls, and
// moves (a restarted workload) when the tag moves.
type fleetClient struct {
	mu          sync.Mutex
	ok, failed  int
	rev         string
	revsSeen    map[string]bool
	lastFailure string
}

func startFleetClient(t *testing.T, m *framework.Mesh, cluster, ip string, istiods map[string]*localistiod.Istiod) *fleetClient {
	fc := &fleetClient{revsSeen: map[string]bool{}}
	nodeID := "sidecar~" + ip + "~client-" + cluster + ".default~default.svc.cluster.local"
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		var hc healthpb.HealthClient
		var closeCC func()
		defer func() {
			if closeCC != nil {
				closeCC()
			}
		}()
		for ctx.Err() == nil {
			rev := defaultTagRevision(ctx, m, cluster)
			fc.mu.Lock()
			cur := fc.rev
			fc.mu.Unlock()
			if rev != "" && rev != cur && istiods[rev] != nil {
				if closeCC != nil {
					closeCC()
				}
				rb, err := xds.NewXDSResolverWithConfigForTesting(xdsBootstrap(istiods[rev].GRPCAddr, nodeID, cluster, "r1", "z1"))
				if err != nil {
					panic(err) // static shape
				}
				cc, err := grpc.NewClient("xds:///"+echoHost+":"+itoa(echoPort), grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					panic(err) // static options
				}
				closeCC = func() { _ = cc.Close() }
				hc = healthpb.NewHealthClient(cc)
				fc.mu.Lock()
				fc.rev = rev
				fc.mu.Unlock()
			}
			if hc == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
			ccancel()
			if ctx.Err() != nil {
				return
			}
			fc.mu.Lock()
			fc.revsSeen[fc.rev] = true
			if err != nil {
				fc.failed++
				fc.lastFailure = err.Error()
			} else {
				fc.ok++
			}
			fc.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return fc
}

// reset starts counting again.
func (fc *fleetClient) reset() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.ok, fc.failed, fc.lastFailure = 0, 0, ""
	fc.revsSeen = map[string]bool{fc.rev: true}
}

// counts returns the RPCs that succeeded and failed since the last reset
// and the revisions the client used.
func (fc *fleetClient) counts() (ok, failed int, revs string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var rs []string
	for r := range fc.revsSeen {
		rs = append(rs, r)
	}
	return fc.ok, fc.failed, strings.Join(rs, ",")
}

// waitOK waits until the client is on rev and its RPCs succeed.
func (fc *fleetClient) waitOK(t *testing.T, cluster, rev string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, "client of "+cluster+" on "+rev+" and answered", func() error {
		fc.mu.Lock()
		cur, ok := fc.rev, fc.ok
		fc.mu.Unlock()
		if cur != rev {
			return fmt.Errorf("on %q", cur)
		}
		before := ok
		time.Sleep(300 * time.Millisecond)
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if fc.ok <= before || fc.rev != rev {
			return fmt.Errorf("no RPC answered on %s lately (last failure %q)", rev, fc.lastFailure)
		}
		return nil
	})
}

// defaultTagRevision is the revision the default tag's webhook of cluster
// calls (its Service istiod-<rev>), "" when unknown.
func defaultTagRevision(ctx context.Context, m *framework.Mesh, cluster string) string {
	wh := &unstructured.Unstructured{}
	wh.SetAPIVersion("admissionregistration.k8s.io/v1")
	wh.SetKind("MutatingWebhookConfiguration")
	if err := m.C[cluster].Get(ctx, client.ObjectKey{Name: "istio-revision-tag-default"}, wh); err != nil {
		return ""
	}
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	if len(hooks) == 0 {
		return ""
	}
	svc, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "service", "name")
	return strings.TrimPrefix(svc, "istiod-")
}
