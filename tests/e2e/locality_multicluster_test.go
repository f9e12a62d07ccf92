//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/locality/members"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// Addresses of the three-cluster locality test (added to lo by the test).
var (
	lmcClientAddr = netip.MustParseAddr("198.18.4.20") // the client's identity only
)

// lmcWorkloads: echo replicas in the two remotes, the primary has the
// Service only. remote1 spans r1/z1 and r1/z2, remote2 is r2/z3: three
// clusters, two regions, three zones. (node-r1-z1 already exists in
// remote1: startMesh created it for mcWorkloads, with the same labels.)
var lmcWorkloads = map[string][]workload{
	"remote1": {
		{name: "echo-r1-z1", node: "node-r1-z1", region: "r1", zone: "z1", addr: netip.MustParseAddr("198.18.4.1")},
		{name: "echo-r1-z2", node: "node-r1-z2", region: "r1", zone: "z2", addr: netip.MustParseAddr("198.18.4.2")},
	},
	"remote2": {
		{name: "echo-r2-z3", node: "node-r2-z3", region: "r2", zone: "z3", addr: netip.MustParseAddr("198.18.4.3")},
	},
}

// lmcOrder is every workload, in the order the tables print them.
var lmcOrder = append(append([]workload(nil), lmcWorkloads["remote1"]...), lmcWorkloads["remote2"]...)

var lmcPhases = []struct {
	name     string
	notReady map[string]bool
	want     string // workload that must get ≥99% of r1/z1's RPCs
}{
	{"healthy", nil, "echo-r1-z1"},
	{"zone r1/z1 not ready", map[string]bool{"echo-r1-z1": true}, "echo-r1-z2"},
	{"region r1 not ready", map[string]bool{"echo-r1-z1": true, "echo-r1-z2": true}, "echo-r2-z3"},
	{"recovered", nil, "echo-r1-z1"},
}

// TestLocalityServerMulticluster runs meshfleet's locality server against
// three clusters joined by the operator (a primary and two remotes reached
// through RemoteIstio kubeconfig Secrets), with its members read from the
// mesh (pkg/locality/members) and its rules written into the primary's API
// server, where the real istiod reads them.
// A real proxyless gRPC client in r1/z1 first goes through every phase
// with plain istiod (no rule yet: the baseline), then shows ≥99% of RPCs
// in its zone, in r1/z2 when its zone is not ready, in r2 when r1 is not
// ready, and home after recovery.
func TestLocalityServerMulticluster(t *testing.T) {
	addrs := []netip.Addr{lmcClientAddr}
	for _, w := range lmcOrder {
		addrs = append(addrs, w.addr)
	}
	if err := netns.Setup(addrs...); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary,
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		LocalityLB: v1beta1.LocalityLBSpec{Enabled: true,
			Failover: []v1beta1.LocalityFailover{{From: "r1", To: "r2"}, {From: "r2", To: "r1"}}},
	})
	ctx, cancel := context.WithTimeout(m.ctx, 8*time.Minute)
	defer cancel()

	// Workloads: the Service everywhere, Pods and EndpointSlices in the remotes.
	createEchoService(ctx, t, m.kube[mcPrimary], nil)
	for _, r := range mcRemotes {
		ws := lmcWorkloads[r]
		var newNodes []workload
		for _, w := range ws {
			if w.node != "node-r1-z1" {
				newNodes = append(newNodes, w)
			}
		}
		createNodes(ctx, t, m.kube[r], newNodes)
		createEchoService(ctx, t, m.kube[r], ws)
		mustCreate(t, "endpointslice default/echo-1 in "+r, func() error {
			_, err := m.kube[r].DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice(ws, nil), metav1.CreateOptions{})
			return err
		})
		for _, w := range ws {
			startEchoServer(t, w.addr, echoPort)
		}
		m.kubeconfigSecret(r)
		m.createRemoteIstio(r, "")
	}

	nodeID := "sidecar~" + lmcClientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(m.istiod.GRPCAddr, nodeID, mcPrimary, "r1", "z1"))

	// Baseline: istiod alone (the locality server serves no rule yet) spreads
	// the RPCs over every endpoint of both remotes.
	all := map[string]bool{}
	for _, w := range lmcOrder {
		all[w.name] = true
	}
	m.eventually(90*time.Second, "RPCs answered in every zone of both remotes", func() error {
		got := callPeers(ctx, cc, 30)
		for _, w := range lmcOrder {
			if got[w.addr.String()] == 0 {
				return fmt.Errorf("30 RPCs: %v", got)
			}
		}
		return nil
	})
	// The baseline goes through the same phases: plain istiod keeps
	// spreading the RPCs over every ready endpoint, near or far.
	var baseline []map[string]int
	for i, p := range lmcPhases {
		if i > 0 {
			lmcSetNotReady(ctx, t, m, p.notReady)
		}
		waitNoneOn(t, cc, lmcOrder, p.notReady, 30*time.Second)
		baseline = append(baseline, callPeers(ctx, cc, rpcsPerPhase))
		t.Logf("baseline (plain istiod), %s: %s", p.name, sharesOf(baseline[i], lmcOrder, 9))
	}

	// The locality server takes its members from the mesh and writes its
	// rules into the primary's API server.
	start := time.Now()
	srvCtx := testenv.Context(t)
	s, err := pipeline.New(pipeline.Options{Mesh: m.env.Cluster(mcPrimary).Config, MeshOptions: members.Options{Namespace: mcNS}, Namespace: mcNS,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(srvCtx) }()
	mesh, err := s.Mesh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.eventually(30*time.Second, "the locality server watches all three clusters", func() error {
		w := s.Watcher()
		if w == nil {
			return fmt.Errorf("no topology watcher yet")
		}
		got := w.Clusters()
		if len(got) != 3 || !got[mcPrimary] || !got["remote1"] || !got["remote2"] {
			return fmt.Errorf("clusters (name: synced) %v", got)
		}
		return nil
	})
	t.Logf("members from the mesh (%v): %s", time.Since(start).Round(time.Millisecond), lmcMembers(mesh))

	want := map[string]uint32{"r1/z1": 0, "r1/z2": 1, "r2/z3": 2}
	waitPriorities(ctx, t, m.istiod.GRPCAddr, nodeID, mcPrimary, want)
	st := s.State()
	for _, d := range st.Decisions {
		if d.Service == "default/echo" {
			out, _ := yaml.Marshal(d)
			t.Logf("locality server decision for default/echo:\n%s", out)
			if d.Rule == nil {
				t.Fatalf("no rule generated for default/echo: %s", d.Skipped)
			}
		}
	}

	var got []map[string]int
	for i, p := range lmcPhases {
		if i > 0 {
			lmcSetNotReady(ctx, t, m, p.notReady)
		}
		wantAddr := lmcAddrOf(p.name, p.want)
		start := time.Now()
		waitAllOn(t, cc, wantAddr, 20, 60*time.Second)
		moved := time.Since(start)
		dist := callPeers(ctx, cc, rpcsPerPhase)
		got = append(got, dist)
		t.Logf("%s: traffic on %s after %v; %s", p.name, p.want, moved.Round(time.Millisecond), sharesOf(dist, lmcOrder, 9))
		if float64(dist[wantAddr]) < 0.99*rpcsPerPhase {
			t.Errorf("%s: %d/%d RPCs on %s, want ≥ 99%%", p.name, dist[wantAddr], rpcsPerPhase, p.want)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "share of %d RPCs from a client in r1/z1 (3 clusters; remote1: r1/z1 r1/z2, remote2: r2/z3):\n", rpcsPerPhase)
	fmt.Fprintf(&b, "%-22s %-10s %s\n", "phase", "setup", "echo-r1-z1 | echo-r1-z2 | echo-r2-z3 | errors")
	for i, p := range lmcPhases {
		fmt.Fprintf(&b, "%-22s %-10s %s\n", p.name, "baseline", sharesOf(baseline[i], lmcOrder, 9))
		fmt.Fprintf(&b, "%-22s %-10s %s\n", "", "meshfleet", sharesOf(got[i], lmcOrder, 9))
	}
	t.Log("\n" + b.String())
}

// lmcSetNotReady rewrites each remote's echo EndpointSlice with the named
// workloads not ready.
func lmcSetNotReady(ctx context.Context, t *testing.T, m *mcMesh, notReady map[string]bool) {
	t.Helper()
	for _, r := range mcRemotes {
		slices := m.kube[r].DiscoveryV1().EndpointSlices("default")
		live, err := slices.Get(ctx, "echo-1", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading EndpointSlice default/echo-1 in %s: %v", r, err)
		}
		updated := echoSlice(lmcWorkloads[r], notReady)
		updated.ResourceVersion = live.ResourceVersion
		if _, err := slices.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("updating EndpointSlice default/echo-1 in %s: %v", r, err)
		}
	}
}

func lmcAddrOf(phase, name string) string {
	for _, w := range lmcOrder {
		if w.name == name {
			return w.addr.String()
		}
	}
	panic("phase " + phase + ": no workload " + name)
}

func lmcMembers(m *members.Mesh) string {
	var parts []string
	for _, mb := range m.Members {
		parts = append(parts, fmt.Sprintf("%s (%s, %s)", mb.Name, mb.Connection, mb.Source))
	}
	return fmt.Sprintf("Istio %s, failover %v, members %s", m.Istio, m.Failover, strings.Join(parts, ", "))
}
