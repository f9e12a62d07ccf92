//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

const edsType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

// edsCluster is the EDS resource name istiod uses for the echo port.
var edsCluster = fmt.Sprintf("outbound|%d||%s", echoPort, echoHost)

// fetchPriorities asks istiod, over a raw ADS stream as a proxyless gRPC
// node in r1/z1, for the echo ClusterLoadAssignment and returns the priority
// of each "region/zone" locality.
func fetchPriorities(ctx context.Context, xdsAddr, nodeID, clusterID string) (map[string]uint32, error) {
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing istiod at %s: %w", xdsAddr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening ADS stream to %s: %w", xdsAddr, err)
	}
	md, _ := structpb.NewStruct(map[string]any{
		"GENERATOR": "grpc", "NAMESPACE": "default", "CLUSTER_ID": clusterID, "ISTIO_VERSION": istioVersion,
	})
	req := &discoveryv3.DiscoveryRequest{
		Node:          &corev3.Node{Id: nodeID, Metadata: md, Locality: &corev3.Locality{Region: "r1", Zone: "z1"}},
		TypeUrl:       edsType,
		ResourceNames: []string{edsCluster},
	}
	if err := stream.Send(req); err != nil {
		return nil, fmt.Errorf("sending EDS request: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("receiving EDS response: %w", err)
	}
	out := map[string]uint32{}
	for _, r := range resp.Resources {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			return nil, fmt.Errorf("decoding ClusterLoadAssignment: %w", err)
		}
		for _, le := range cla.Endpoints {
			out[le.GetLocality().GetRegion()+"/"+le.GetLocality().GetZone()] = le.Priority
		}
	}
	return out, nil
}

// waitPriorities polls istiod's EDS until the priorities equal want.
func waitPriorities(ctx context.Context, t *testing.T, xdsAddr, nodeID, clusterID string, want map[string]uint32) {
	t.Helper()
	got := waitXDSValues(ctx, t, "istiod EDS priorities for "+edsCluster, want, func(ctx context.Context) (map[string]uint32, error) {
		return fetchPriorities(ctx, xdsAddr, nodeID, clusterID)
	})
	t.Logf("istiod EDS priorities for %s: %s", edsCluster, formatValues(got))
}

// waitXDSValues polls fetch (a read of istiod's xDS) for up to 30 s until
// it returns want, and returns it; the test fails otherwise.
func waitXDSValues(ctx context.Context, t *testing.T, what string, want map[string]uint32, fetch func(context.Context) (map[string]uint32, error)) map[string]uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got map[string]uint32
	var err error
	for ctx.Err() == nil {
		got, err = fetch(ctx)
		if err == nil && formatValues(got) == formatValues(want) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: got %s (err %v), want %s", what, formatValues(got), err, formatValues(want))
	return nil
}

// formatValues prints m as sorted key=value pairs.
func formatValues(m map[string]uint32) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
