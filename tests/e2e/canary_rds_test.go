//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

const rdsType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

// fetchRouteWeights asks istiod, over a raw ADS stream as a proxyless gRPC
// node, for the RouteConfiguration name and returns the weight of each
// cluster of its default route (the last route of the first virtual host).
func fetchRouteWeights(ctx context.Context, xdsAddr, nodeID, clusterID, name string) (map[string]uint32, error) {
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
	if err := stream.Send(&discoveryv3.DiscoveryRequest{
		Node:    &corev3.Node{Id: nodeID, Metadata: md, Locality: &corev3.Locality{Region: "r1", Zone: "z1"}},
		TypeUrl: rdsType, ResourceNames: []string{name},
	}); err != nil {
		return nil, fmt.Errorf("sending RDS request: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("receiving RDS response: %w", err)
	}
	out := map[string]uint32{}
	for _, r := range resp.Resources {
		rc := &routev3.RouteConfiguration{}
		if err := r.UnmarshalTo(rc); err != nil {
			return nil, fmt.Errorf("decoding RouteConfiguration: %w", err)
		}
		for _, vh := range rc.VirtualHosts {
			if len(vh.Routes) == 0 {
				continue
			}
			ra := vh.Routes[len(vh.Routes)-1].GetRoute()
			if c := ra.GetCluster(); c != "" {
				out[c] = 100
			}
			for _, wc := range ra.GetWeightedClusters().GetClusters() {
				out[wc.Name] = wc.GetWeight().GetValue()
			}
			break
		}
	}
	return out, nil
}

// waitRouteWeights polls istiod's RDS until the default route's weights
// equal want.
func waitRouteWeights(ctx context.Context, t *testing.T, xdsAddr, nodeID, clusterID, name string, want map[string]uint32) {
	t.Helper()
	waitXDSValues(ctx, t, "istiod RDS "+name+" weights", want, func(ctx context.Context) (map[string]uint32, error) {
		return fetchRouteWeights(ctx, xdsAddr, nodeID, clusterID, name)
	})
}
