//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"google.golang.org/grpc"

	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/locality"
)

// r3Addr is the fourth echo server's address, added to lo by the test
// (TestMain adds only the first three).
var r3Addr = netip.MustParseAddr("198.18.1.4")

// localityWorkloads span three regions and four zones. The policy's RTTs
// make r3 nearer to r1 than r2 is, so the nearest region is not the one a
// name order would pick.
var localityWorkloads = []workload{
	{name: "echo-1", node: "node-r1-z1", region: "r1", zone: "z1", addr: echoAddrs[0]},
	{name: "echo-2", node: "node-r1-z2", region: "r1", zone: "z2", addr: echoAddrs[1]},
	{name: "echo-3", node: "node-r2-z3", region: "r2", zone: "z3", addr: echoAddrs[2]},
	{name: "echo-4", node: "node-r3-z4", region: "r3", zone: "z4", addr: r3Addr},
}

var localityPolicy = locality.Policy{Distances: []locality.Distance{
	{From: "r1", To: "r2", RTT: metav1.Duration{Duration: 80 * time.Millisecond}},
	{From: "r1", To: "r3", RTT: metav1.Duration{Duration: 10 * time.Millisecond}},
	{From: "r2", To: "r3", RTT: metav1.Duration{Duration: 60 * time.Millisecond}},
}}

// phases of the failover scenario: which workloads are not ready.
var localityPhases = []struct {
	name     string
	notReady map[string]bool
	want     string // workload that should get ≥99% of r1/z1's RPCs with meshfleet
}{
	{"healthy", nil, "echo-1"},
	{"zone r1/z1 not ready", map[string]bool{"echo-1": true}, "echo-2"},
	{"region r1 not ready", map[string]bool{"echo-1": true, "echo-2": true}, "echo-4"},
	{"recovered", nil, "echo-1"},
}

const rpcsPerPhase = 300

// TestLocalityServerFailover runs the same scenario twice against real
// istiod and a real proxyless gRPC client in r1/z1: first with plain istiod
// (no DestinationRule: the baseline), then with meshfleet's locality server
// writing its DestinationRules into the API server istiod reads. With meshfleet,
// ≥99% of RPCs must land in the client's zone, then the same region's other
// zone, then the nearest region by RTT (r3, not r2), then home again.
func TestLocalityServerFailover(t *testing.T) {
	if err := netns.Setup(r3Addr); err != nil {
		t.Fatal(err)
	}
	results := map[string][]map[string]int{}
	t.Run("baseline plain istiod", func(t *testing.T) {
		results["baseline"] = runLocalityScenario(t, nil)
	})
	t.Run("meshfleet locality server", func(t *testing.T) {
		results["meshfleet"] = runLocalityScenario(t, &localityPolicy)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "share of %d RPCs from a client in r1/z1, per phase:\n", rpcsPerPhase)
	fmt.Fprintf(&b, "%-22s %-10s %s\n", "phase", "setup", "echo-1 r1/z1 | echo-2 r1/z2 | echo-3 r2/z3 | echo-4 r3/z4 | errors")
	for i, p := range localityPhases {
		for _, setup := range []string{"baseline", "meshfleet"} {
			if i >= len(results[setup]) {
				continue
			}
			fmt.Fprintf(&b, "%-22s %-10s %s\n", p.name, setup, sharesOf(results[setup][i], localityWorkloads, 11))
		}
	}
	t.Log("\n" + b.String())
}

// runLocalityScenario starts a stack (with the locality server when policy
// is set), walks the phases and returns the RPC distribution of each.
func runLocalityScenario(t *testing.T, policy *locality.Policy) []map[string]int {
	const cluster = "primary"
	s := startLocalityStack(t, cluster, policy)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	createNodes(ctx, t, s.kube, localityWorkloads)
	createEchoService(ctx, t, s.kube, localityWorkloads)
	slices := s.kube.DiscoveryV1().EndpointSlices("default")
	mustCreate(t, "endpointslice default/echo-1", func() error {
		_, err := slices.Create(ctx, echoSlice(localityWorkloads, nil), metav1.CreateOptions{})
		return err
	})
	for _, w := range localityWorkloads {
		startEchoServer(t, w.addr, echoPort)
	}
	nodeID := "sidecar~" + clientAddr.String() + "~client.default~default.svc.cluster.local"
	if policy != nil {
		// The generated DestinationRule gives the failover order: own zone,
		// own region, r3 (nearest by RTT), then r2.
		want := map[string]uint32{"r1/z1": 0, "r1/z2": 1, "r3/z4": 2, "r2/z3": 3}
		time.Sleep(time.Second)
		t.Logf("locality server state:\n%s", debugState(t, s))
		waitPriorities(ctx, t, s.istiod.GRPCAddr, nodeID, cluster, want)
	}
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(s.istiod.GRPCAddr, nodeID, cluster, "r1", "z1"))
	// A second client, in r2/z3, checks that each zone keeps its own traffic.
	cc2 := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(s.istiod.GRPCAddr, "sidecar~198.18.0.11~client2.default~default.svc.cluster.local", cluster, "r2", "z3"))

	var out []map[string]int
	for i, p := range localityPhases {
		if i > 0 {
			setNotReady(ctx, t, s, p.notReady)
		}
		want := addrOf(p.want)
		if policy != nil {
			waitAllOn(t, cc, want, 20, 60*time.Second)
		} else {
			waitNoneOn(t, cc, localityWorkloads, p.notReady, 30*time.Second)
		}
		got := callPeers(ctx, cc, rpcsPerPhase)
		t.Logf("%s: %s", p.name, sharesOf(got, localityWorkloads, 11))
		out = append(out, got)
		if policy != nil && float64(got[want]) < 0.99*rpcsPerPhase {
			t.Errorf("%s: %d/%d RPCs on %s (%s), want ≥ 99%%", p.name, got[want], rpcsPerPhase, p.want, want)
		}
		if policy != nil && p.name == "healthy" {
			got2 := callPeers(ctx, cc2, rpcsPerPhase)
			if own := addrOf("echo-3"); float64(got2[own]) < 0.99*rpcsPerPhase {
				t.Errorf("client in r2/z3: %d/%d RPCs on echo-3, want ≥ 99%% (%s)", got2[own], rpcsPerPhase, sharesOf(got2, localityWorkloads, 11))
			}
		}
	}
	return out
}

// setNotReady rewrites the echo EndpointSlice with the named workloads not ready.
func setNotReady(ctx context.Context, t *testing.T, s *localityStack, notReady map[string]bool) {
	t.Helper()
	slices := s.kube.DiscoveryV1().EndpointSlices("default")
	live, err := slices.Get(ctx, "echo-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading EndpointSlice default/echo-1: %v", err)
	}
	updated := echoSlice(localityWorkloads, notReady)
	updated.ResourceVersion = live.ResourceVersion
	if _, err := slices.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating EndpointSlice default/echo-1: %v", err)
	}
}

// waitNoneOn waits until 40 consecutive RPCs avoid every not-ready workload
// and reach every ready one (istiod has caught up; the baseline spreads
// RPCs over all ready endpoints), or gives up quietly after timeout.
func waitNoneOn(t *testing.T, cc *grpc.ClientConn, workloads []workload, notReady map[string]bool, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		got := callPeers(ctx, cc, 40)
		ok := true
		for _, w := range workloads {
			if n := got[w.addr.String()]; (notReady[w.name] && n > 0) || (!notReady[w.name] && n == 0) {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func addrOf(name string) string {
	for _, w := range localityWorkloads {
		if w.name == name {
			return w.addr.String()
		}
	}
	return "?"
}

// debugState returns the locality server's debug view.
func debugState(t *testing.T, s *localityStack) string {
	st := s.xds.State()
	var b strings.Builder
	fmt.Fprintf(&b, "leader %v, %d rules in %s, members %v, held %v\n", st.Leader, st.Rules, st.Namespace, st.Members, st.Held)
	for _, d := range st.Decisions {
		fmt.Fprintf(&b, "%s: skipped=%q reasons=%v warnings=%v\n", d.Service, d.Skipped, d.Reasons, d.Warnings)
	}
	return b.String()
}

// sharesOf formats a distribution of RPCs as the percentage answered by
// each of columns' workloads, each width wide, then the rest (errors).
func sharesOf(got map[string]int, columns []workload, width int) string {
	total := 0
	for _, n := range got {
		total += n
	}
	if total == 0 {
		return "no RPCs"
	}
	var parts []string
	rest := total
	for _, w := range columns {
		n := got[w.addr.String()]
		rest -= n
		parts = append(parts, fmt.Sprintf("%*.1f%%", width, 100*float64(n)/float64(total)))
	}
	parts = append(parts, fmt.Sprintf("%5.1f%%", 100*float64(rest)/float64(total)))
	return strings.Join(parts, " |")
}
