//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/operator/istio"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestRolloutAckGateObservesRealProxies: the fleet rollout's xDS gate
// (istio.IstiodDebug.Acks, what the operator runs while a batch gates)
// reads a real istiod's per-proxy sync state on its monitoring port. A
// real proxyless grpc-go client of cluster west that calls the echo
// service is seen connected and ACKed, a client of another cluster is not
// counted for west; once istiod serves west's client a cluster it rejects
// (a DestinationRule asking for Maglev, which grpc-go does not implement),
// the client's NACK is seen with its name (istiod's proxy ID, <pod>.<ns>)
// and grpc-go's error, and the
// planner moves the batch back with that reason.
func TestRolloutAckGateObservesRealProxies(t *testing.T) {
	const cluster, rev = "west", "1-30-3"
	s := startStack(t, cluster, "")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	createNodes(ctx, t, s.kube, workloads)
	createEchoService(ctx, t, s.kube, workloads)
	mustCreate(t, "endpointslice default/echo-1", func() error {
		_, err := s.kube.DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice(workloads, nil), metav1.CreateOptions{})
		return err
	})
	for _, w := range workloads {
		startEchoServer(t, w.addr, echoPort)
	}
	debug := istio.IstiodDebug{Addresses: map[string]string{rev: s.istiod.MonitoringAddr}}
	acks := func() (tagrollout.Acks, error) {
		a, problem := debug.Acks(ctx, nil, "istio-system", rev, []string{cluster})
		if problem != "" {
			return a, fmt.Errorf("%s", problem)
		}
		return a, nil
	}
	if a, err := acks(); err != nil || a != (tagrollout.Acks{}) {
		t.Fatalf("before any client: %+v, %v; want no proxy", a, err)
	}

	target := "xds:///" + echoHost + ":" + itoa(echoPort)
	westID := "sidecar~" + clientAddr.String() + "~client-west.default~default.svc.cluster.local"
	west := dialXDS(t, target, xdsBootstrap(s.istiod.GRPCAddr, westID, cluster, "r1", "z1"))
	east := dialXDS(t, target, xdsBootstrap(s.istiod.GRPCAddr, "sidecar~198.18.0.11~client-east.default~default.svc.cluster.local", "east", "r2", "z3"))
	for name, got := range map[string]map[string]int{"west": callPeers(ctx, west, 5), "east": callPeers(ctx, east, 5)} {
		for k, n := range got {
			if strings.HasPrefix(k, "error") {
				t.Fatalf("client %s: %d RPCs failed: %s", name, n, k)
			}
		}
	}
	testenv.Eventually(t, time.Minute, "west's client connected and ACKed", func() error {
		a, err := acks()
		if err != nil {
			return err
		}
		if a != (tagrollout.Acks{Proxies: 1, Acked: 1}) {
			return fmt.Errorf("acks %+v, want 1 proxy (west's, not east's), ACKed", a)
		}
		return nil
	})
	t.Logf("west's client ACKed istiod's latest push (east's client not counted)")

	c, err := client.New(s.cluster.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "DestinationRule",
		"metadata":   map[string]any{"name": echoService, "namespace": "default"},
		"spec": map[string]any{"host": echoHost, "trafficPolicy": map[string]any{"loadBalancer": map[string]any{
			"consistentHash": map[string]any{"maglev": map[string]any{"tableSize": int64(65537)}, "useSourceIp": true}}}},
	}}
	if err := c.Create(ctx, dr); err != nil {
		t.Fatalf("creating DestinationRule default/%s: %v", echoService, err)
	}
	var nacked tagrollout.Acks
	testenv.Eventually(t, time.Minute, "west's client NACKed the Maglev cluster", func() error {
		a, err := acks()
		if err != nil {
			return err
		}
		if a.Nacked != 1 || !strings.Contains(a.Nack, "proxy client-west.default (cluster west) NACKed Cluster: ") || !strings.Contains(a.Nack, "MAGLEV") {
			return fmt.Errorf("acks %+v, want west's client NACKing the cluster with grpc-go's error", a)
		}
		nacked = a
		return nil
	})
	t.Logf("observed: %+v", nacked)

	// The planner, given what the operator observed, moves the batch back.
	r := tagrollout.Rollout{From: "1-29-6", To: rev, Batches: []tagrollout.Batch{{Name: "canary", Clusters: []string{cluster}}},
		Gate: tagrollout.Gate{Timeout: time.Minute}}
	now := time.Now()
	_, st, err := tagrollout.Next(r, now, tagrollout.Observation{})
	if err != nil {
		t.Fatal(err)
	}
	r.Status = st
	act, _, err := tagrollout.Next(r, now.Add(time.Second), tagrollout.Observation{IstiodReady: true,
		Proxies: nacked.Proxies, Acked: nacked.Acked, Nacked: nacked.Nacked, Nack: nacked.Nack, ProxiesExpected: 1})
	if err != nil {
		t.Fatal(err)
	}
	if act.Kind != tagrollout.MoveTag || act.Revision != "1-29-6" || !strings.Contains(act.Reason, "1 of 1 proxies NACKed the config of istiod-1-30-3: proxy client-west.default") {
		t.Errorf("planner: %+v; want the batch moved back, naming the proxy", act)
	}
	t.Logf("planner: %s", act.Reason)
}
