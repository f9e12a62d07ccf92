package framework

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// xDS type URLs the probe asks for.
const (
	EDSType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	RDSType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// XDSNode is who the probe asks istiod as: a proxyless gRPC client.
type XDSNode struct {
	// ID is the node ID, e.g. sidecar~10.0.0.1~client.default~default.svc.cluster.local.
	ID string
	// Cluster is the client's cluster (CLUSTER_ID); Network its network
	// (NETWORK, omitted when empty).
	Cluster, Network string
	// Namespace is the client's namespace; "default" if empty.
	Namespace string
	// IstioVersion is the client's ISTIO_VERSION.
	IstioVersion string
	// Region and Zone are the client's locality.
	Region, Zone string
}

func (n XDSNode) proto() (*corev3.Node, error) {
	ns := n.Namespace
	if ns == "" {
		ns = "default"
	}
	// PROXY_CONFIG: istioctl proxy-status lists only nodes that carry it.
	md := map[string]any{"GENERATOR": "grpc", "NAMESPACE": ns, "CLUSTER_ID": n.Cluster, "ISTIO_VERSION": n.IstioVersion, "PROXY_CONFIG": map[string]any{}}
	if n.Network != "" {
		md["NETWORK"] = n.Network
	}
	s, err := structpb.NewStruct(md)
	if err != nil {
		return nil, err
	}
	return &corev3.Node{Id: n.ID, Metadata: s, Locality: &corev3.Locality{Region: n.Region, Zone: n.Zone}}, nil
}

// Fetch opens an ADS stream to istiod's plain-text xDS address as node, asks
// for names of typeURL and returns the first answer's resources.
func Fetch(ctx context.Context, xdsAddr string, node XDSNode, typeURL string, names ...string) ([]*anypb.Any, error) {
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing istiod at %s: %w", xdsAddr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening an ADS stream to %s: %w", xdsAddr, err)
	}
	n, err := node.proto()
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: typeURL, ResourceNames: names}); err != nil {
		return nil, fmt.Errorf("asking %s for %v: %w", xdsAddr, names, err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("reading %s's answer for %v: %w", xdsAddr, names, err)
	}
	return resp.Resources, nil
}

// Endpoint is one endpoint of an EDS answer.
type Endpoint struct {
	Addr     string // ip:port
	Locality string // region/zone
	Priority uint32
}

func (e Endpoint) String() string { return fmt.Sprintf("%s@%s/p%d", e.Addr, e.Locality, e.Priority) }

// LoadAssignments asks istiod for the ClusterLoadAssignment of cluster
// (e.g. outbound|7070||echo.default.svc.cluster.local).
func LoadAssignments(ctx context.Context, xdsAddr string, node XDSNode, cluster string) ([]*endpointv3.ClusterLoadAssignment, error) {
	res, err := Fetch(ctx, xdsAddr, node, EDSType, cluster)
	if err != nil {
		return nil, err
	}
	out := make([]*endpointv3.ClusterLoadAssignment, 0, len(res))
	for _, r := range res {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			return nil, fmt.Errorf("decoding the ClusterLoadAssignment of %s: %w", cluster, err)
		}
		out = append(out, cla)
	}
	return out, nil
}

// Endpoints asks istiod for the ClusterLoadAssignment of cluster and
// returns its endpoints, sorted by address.
func Endpoints(ctx context.Context, xdsAddr string, node XDSNode, cluster string) ([]Endpoint, error) {
	clas, err := LoadAssignments(ctx, xdsAddr, node, cluster)
	if err != nil {
		return nil, err
	}
	var out []Endpoint
	for _, cla := range clas {
		for _, le := range cla.Endpoints {
			loc := le.GetLocality().GetRegion() + "/" + le.GetLocality().GetZone()
			for _, lb := range le.LbEndpoints {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, Endpoint{
					Addr:     net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue())),
					Locality: loc, Priority: le.Priority,
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}

// Routes asks istiod for the RouteConfigurations names.
func Routes(ctx context.Context, xdsAddr string, node XDSNode, names ...string) ([]*routev3.RouteConfiguration, error) {
	res, err := Fetch(ctx, xdsAddr, node, RDSType, names...)
	if err != nil {
		return nil, err
	}
	out := make([]*routev3.RouteConfiguration, 0, len(res))
	for _, r := range res {
		rc := &routev3.RouteConfiguration{}
		if err := r.UnmarshalTo(rc); err != nil {
			return nil, fmt.Errorf("decoding a RouteConfiguration of %v: %w", names, err)
		}
		out = append(out, rc)
	}
	return out, nil
}

// DefaultRouteWeights is the weight of each cluster of the default route
// (the last route of the first virtual host with routes) of rcs: 100 for a
// single cluster.
func DefaultRouteWeights(rcs []*routev3.RouteConfiguration) map[string]uint32 {
	out := map[string]uint32{}
	for _, rc := range rcs {
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
	return out
}
