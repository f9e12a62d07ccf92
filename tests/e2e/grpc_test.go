//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"
)

// istioVersion is the proxy version the xDS clients claim (istiod warns
// when there is none, and gates some features on it).
const istioVersion = "1.30.0"

// startEchoServer serves the gRPC health service on addr:port until the test
// ends. The client tells servers apart by the peer address of each call.
func startEchoServer(t *testing.T, addr netip.Addr, port int) {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		t.Fatalf("listening on %s:%d: %v", addr, port, err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
}

// xdsBootstrap returns a grpc-go xDS bootstrap (the JSON that
// GRPC_XDS_BOOTSTRAP_CONFIG would hold) for a proxyless client talking
// plain text to istiod at xdsAddr, as node id, with the given locality.
func xdsBootstrap(xdsAddr, nodeID, clusterID, region, zone string) []byte {
	b := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      xdsAddr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": nodeID,
			"metadata": map[string]any{
				"GENERATOR":     "grpc",
				"NAMESPACE":     "default",
				"CLUSTER_ID":    clusterID,
				"ISTIO_VERSION": istioVersion,
			},
			"locality": map[string]any{"region": region, "zone": zone},
		},
	}
	out, err := json.Marshal(b)
	if err != nil {
		panic(err) // static shape
	}
	return out
}

// dialXDS dials target through grpc-go's xDS resolver configured with
// bootstrap. The resolver is built per dial (not read from
// GRPC_XDS_BOOTSTRAP_CONFIG, which grpc-go reads once at package init,
// before istiod's port is known).
func dialXDS(t *testing.T, target string, bootstrap []byte) *grpc.ClientConn {
	t.Helper()
	if os.Getenv("GRPC_XDS_BOOTSTRAP") != "" || os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") != "" {
		t.Log("note: GRPC_XDS_BOOTSTRAP* set in the environment; the test uses its own bootstrap")
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("building xDS resolver from bootstrap %s: %v", bootstrap, err)
	}
	cc, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dialing %s: %v", target, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// callPeers makes n health-check RPCs and counts which server address
// answered each; failed calls are counted under "error: <code>".
func callPeers(ctx context.Context, cc *grpc.ClientConn, n int) map[string]int {
	counts := map[string]int{}
	hc := healthpb.NewHealthClient(cc)
	for range n {
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			counts[fmt.Sprintf("error: %v", err)]++
			continue
		}
		host, _, _ := net.SplitHostPort(p.Addr.String())
		counts[host]++
	}
	return counts
}

// waitAllOn calls until n consecutive RPCs are all answered by want, or
// fails the test after timeout with the last distribution seen.
func waitAllOn(t *testing.T, cc *grpc.ClientConn, want string, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var last map[string]int
	for ctx.Err() == nil {
		last = callPeers(ctx, cc, n)
		if last[want] == n {
			t.Logf("%d/%d RPCs answered by %s", n, n, want)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("RPCs did not all land on %s within %v; last %d calls: %v", want, timeout, n, last)
}

func itoa(i int) string { return strconv.Itoa(i) }
