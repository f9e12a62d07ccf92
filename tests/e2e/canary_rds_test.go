//go:build e2e

package e2e

import (
	"context"
	"testing"

	"github.com/meshfleet/meshfleet/tests/framework"
)

const rdsType = framework.RDSType

// fetchRouteWeights asks istiod, over a raw ADS stream as a proxyless gRPC
// node, for the RouteConfiguration name and returns the weight of each
// cluster of its default route (the last route of the first virtual host).
func fetchRouteWeights(ctx context.Context, xdsAddr, nodeID, clusterID, name string) (map[string]uint32, error) {
	rcs, err := framework.Routes(ctx, xdsAddr, framework.XDSNode{ID: nodeID, Cluster: clusterID, IstioVersion: istioVersion, Region: "r1", Zone: "z1"}, name)
	if err != nil {
		return nil, err
	}
	return framework.DefaultRouteWeights(rcs), nil
}

// waitRouteWeights polls istiod's RDS until the default route's weights
// equal want.
func waitRouteWeights(ctx context.Context, t *testing.T, xdsAddr, nodeID, clusterID, name string, want map[string]uint32) {
	t.Helper()
	waitXDSValues(ctx, t, "istiod RDS "+name+" weights", want, func(ctx context.Context) (map[string]uint32, error) {
		return fetchRouteWeights(ctx, xdsAddr, nodeID, clusterID, name)
	})
}
