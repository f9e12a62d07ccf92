//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// meshConfig turns on locality-aware load balancing mesh-wide.
const meshConfig = `localityLbSetting:
  enabled: true
`

var workloads = []workload{
	{name: "echo-1", node: "node-r1-z1", region: "r1", zone: "z1", addr: echoAddrs[0]},
	{name: "echo-2", node: "node-r1-z2", region: "r1", zone: "z2", addr: echoAddrs[1]},
	{name: "echo-3", node: "node-r2-z3", region: "r2", zone: "z3", addr: echoAddrs[2]},
}

// TestIstiodLocalityFailover runs real istiod against a real API server and
// checks that a real proxyless gRPC client in r1/z1 sends every RPC to the
// r1/z1 server, and moves to r1/z2 when that endpoint becomes not ready.
func TestIstiodLocalityFailover(t *testing.T) {
	const cluster = "primary"
	s := startStack(t, cluster, meshConfig)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	createNodes(ctx, t, s.kube, workloads)
	createEchoService(ctx, t, s.kube, workloads)
	slices := s.kube.DiscoveryV1().EndpointSlices("default")
	mustCreate(t, "endpointslice default/echo-1", func() error {
		_, err := slices.Create(ctx, echoSlice(workloads, nil), metav1.CreateOptions{})
		return err
	})
	applyOutlierDestinationRule(ctx, t, s.cluster.Config)
	for _, w := range workloads {
		startEchoServer(t, w.addr, echoPort)
	}

	nodeID := "sidecar~" + clientAddr.String() + "~client.default~default.svc.cluster.local"
	bootstrap := xdsBootstrap(s.istiod.GRPCAddr, nodeID, cluster, "r1", "z1")

	// What istiod sends: one locality per priority, nearest first.
	want := map[string]uint32{"r1/z1": 0, "r1/z2": 1, "r2/z3": 2}
	waitPriorities(ctx, t, s.istiod.GRPCAddr, nodeID, cluster, want)

	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), bootstrap)
	waitAllOn(t, cc, workloads[0].addr.String(), 20, 60*time.Second)

	// r1/z1 goes not ready: istiod drops it, the client fails over to r1/z2.
	live, err := slices.Get(ctx, "echo-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading EndpointSlice default/echo-1: %v", err)
	}
	updated := echoSlice(workloads, map[string]bool{"echo-1": true})
	updated.ResourceVersion = live.ResourceVersion
	if _, err := slices.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("marking echo-1 not ready in EndpointSlice default/echo-1: %v", err)
	}
	t.Logf("marked %s not ready", workloads[0])
	waitAllOn(t, cc, workloads[1].addr.String(), 20, 60*time.Second)
}
