//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/tests/framework"
)

const edsType = framework.EDSType

// edsCluster is the EDS resource name istiod uses for the echo port.
var edsCluster = fmt.Sprintf("outbound|%d||%s", echoPort, echoHost)

// fetchPriorities asks istiod, over a raw ADS stream as a proxyless gRPC
// node in r1/z1, for the echo ClusterLoadAssignment and returns the priority
// of each "region/zone" locality.
func fetchPriorities(ctx context.Context, xdsAddr, nodeID, clusterID string) (map[string]uint32, error) {
	clas, err := framework.LoadAssignments(ctx, xdsAddr, framework.XDSNode{ID: nodeID, Cluster: clusterID, IstioVersion: istioVersion, Region: "r1", Zone: "z1"}, edsCluster)
	if err != nil {
		return nil, err
	}
	out := map[string]uint32{}
	for _, cla := range clas {
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
