//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// Addresses of the multi-cluster tests, added to the namespace's lo by the
// tests themselves (TestMain adds only the single-cluster tests' addresses).
var (
	mcEchoRemote1 = netip.MustParseAddr("198.18.2.1") // echo in remote1, r1/z1
	mcEchoRemote2 = netip.MustParseAddr("198.18.2.2") // echo in remote2, r2/z2
	// mcGatewayRemote2 plays the cloud load balancer in front of remote2's
	// east-west gateway: only ever written into a Service status, never dialled.
	mcGatewayRemote2 = netip.MustParseAddr("198.18.2.3")
	mcGatewayPrimary = netip.MustParseAddr("198.18.2.4") // likewise, for the primary's (net1)
	// mcPilotAddress is what remote proxies would dial for istiod (no proxy
	// runs in a remote here, so it is only rendered into the remote pieces).
	mcPilotAddress = "198.18.2.10"
	mcClientAddr   = netip.MustParseAddr("198.18.2.20")

	// Addresses of the tests that bring up a second set of echo servers
	// (198.18.3.0/24: no other test of the package binds there).
	tnEchoRemote1 = netip.MustParseAddr("198.18.3.1")
	tnEchoRemote2 = netip.MustParseAddr("198.18.3.2")
)

const (
	mcNS      = framework.Namespace
	mcPrimary = framework.Primary
)

var mcRemotes = []string{"remote1", "remote2"}

// mcWorkloads: one echo replica per remote cluster, on a Node of its region/zone.
var mcWorkloads = map[string]workload{
	"remote1": {name: "echo-remote1", node: "node-r1-z1", region: "r1", zone: "z1", addr: mcEchoRemote1},
	"remote2": {name: "echo-remote2", node: "node-r2-z2", region: "r2", zone: "z2", addr: mcEchoRemote2},
}

// tnWorkloads are mcWorkloads on the 198.18.3.0/24 addresses.
var tnWorkloads = map[string]workload{
	"remote1": {name: "echo-remote1", node: "node-r1-z1", region: "r1", zone: "z1", addr: tnEchoRemote1},
	"remote2": {name: "echo-remote2", node: "node-r2-z2", region: "r2", zone: "z2", addr: tnEchoRemote2},
}

// istiodUser is the identity of the primary's istiod service account;
// the tunnel impersonates it in the remotes as istiodRemoteUser. opUser is
// the operator's service account, whose token it presents to the tunnel.
var (
	istiodUser       = mapping.ServiceAccountUser(mcNS, "istiod")
	istiodRemoteUser = render.Istiod.TunnelUser(mcNS)
	opUser           = mapping.ServiceAccountUser(tunnel.DefaultMeshfleetNamespace, "meshfleet-operator")
)

// mcMesh is the e2e view of a framework.Mesh: the primary and two remotes,
// the operator in process, real istiod, echo workloads on mcWorkloads'
// Nodes. Its lower-case fields and methods are kept for the tests written
// before the framework (and for meshes some tests assemble by hand, with
// Mesh nil); new code calls the framework's methods with its own T.
type mcMesh struct {
	*framework.Mesh
	// t is the test that started the mesh: only the helpers without a T
	// parameter use it. Subtests pass their own T to the framework.
	t      *testing.T
	ctx    context.Context
	env    *testenv.Env
	c      map[string]client.Client
	kube   map[string]kubernetes.Interface
	istiod *localistiod.Istiod
	// opLog is the operator's log file.
	opLog string
	// workloads are the echo workloads per remote.
	workloads map[string]workload
}

// startMesh brings up a Direct mesh with istiod (framework.StartMesh) and
// the Nodes of mcWorkloads in the remotes.
func startMesh(t *testing.T, spec v1beta1.IstioSpec) *mcMesh {
	t.Helper()
	return startMeshMode(t, framework.Direct, spec, mcWorkloads)
}

// startMeshMode brings up a mesh of the primary and mcRemotes connected by
// mode, with istiod, and the Nodes of workloads in the remotes (their
// addresses on the namespace's lo).
func startMeshMode(t *testing.T, mode framework.Connection, spec v1beta1.IstioSpec, workloads map[string]workload) *mcMesh {
	t.Helper()
	var addrs []netip.Addr
	for _, r := range mcRemotes {
		addrs = append(addrs, workloads[r].addr)
	}
	if err := netns.Setup(addrs...); err != nil {
		t.Fatal(err)
	}
	fm := framework.StartMesh(t, framework.MeshOptions{
		Remotes: mcRemotes, Connection: mode, Spec: spec, Istiod: true, PilotAddress: mcPilotAddress,
	})
	m := &mcMesh{Mesh: fm, t: t, ctx: t.Context(), env: fm.Env, c: fm.C, kube: fm.Kube, istiod: fm.Istiod, opLog: fm.Operator.LogPath, workloads: workloads}
	for _, r := range mcRemotes {
		createNodes(m.ctx, t, m.kube[r], []workload{workloads[r]})
	}
	return m
}

// fw is the framework's view of the mesh: Mesh, or for a mesh assembled by
// hand (Mesh nil) one over its clusters, clients and istiod.
func (m *mcMesh) fw() *framework.Mesh {
	if m.Mesh != nil {
		return m.Mesh
	}
	return &framework.Mesh{Clusters: &framework.Clusters{Env: m.env, C: m.c, Kube: m.kube}, Istiod: m.istiod, Options: framework.MeshOptions{PilotAddress: mcPilotAddress}}
}

// createEcho creates the echo Service in every cluster and, in each remote,
// its Pod and EndpointSlice, served by a real gRPC server. With injected,
// the Pods carry the label sidecar injection gives them
// (security.istio.io/tlsMode=istio): istiod routes only such endpoints
// through an east-west gateway, since the gateway routes on mTLS SNI.
func (m *mcMesh) createEcho(t *testing.T, injected bool) {
	t.Helper()
	ctx := t.Context()
	createEchoService(ctx, t, m.kube[mcPrimary], nil)
	for _, r := range mcRemotes {
		w := m.workloads[r]
		createEchoService(ctx, t, m.kube[r], []workload{w})
		if injected {
			patch := []byte(`{"metadata":{"labels":{"security.istio.io/tlsMode":"istio"}}}`)
			if _, err := m.kube[r].CoreV1().Pods("default").Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatalf("labelling pod default/%s in %s as injected: %v", w.name, r, err)
			}
		}
		mustCreate(t, "endpointslice default/echo-1 in "+r, func() error {
			_, err := m.kube[r].DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice([]workload{w}, nil), metav1.CreateOptions{})
			return err
		})
		startEchoServer(t, w.addr, echoPort)
	}
}

// kubeconfigSecret stores the admin kubeconfig of a remote in the primary,
// for the RemoteIstio's kubeconfigSecretRef.
func (m *mcMesh) kubeconfigSecret(remote string) string { return m.fw().KubeconfigSecret(m.t, remote) }

// createRemoteIstio creates the RemoteIstio of a remote cluster.
func (m *mcMesh) createRemoteIstio(remote, network string) {
	m.fw().CreateRemoteIstio(m.t, remote, network)
}

// waitRemote waits until the RemoteIstio has the condition True.
func (m *mcMesh) waitRemote(remote, cond string, timeout time.Duration) {
	m.t.Helper()
	m.fw().WaitRemote(m.t, remote, cond, timeout)
}

// eventually polls f with the test that started the mesh.
func (m *mcMesh) eventually(timeout time.Duration, what string, f func() error) {
	m.t.Helper()
	testenv.Eventually(m.t, timeout, what, f)
}

func mcConditions(cs []metav1.Condition) string { return framework.FormatConditions(cs) }

// mcEndpoint is one endpoint of istiod's EDS answer.
type mcEndpoint = framework.Endpoint

// mcNode is the xDS node the raw EDS requests are made as: a proxyless gRPC
// client in the primary, in r1/z1, on network (may be empty).
func mcNode(network string) framework.XDSNode {
	return framework.XDSNode{
		ID:      "sidecar~" + mcClientAddr.String() + "~client.default~default.svc.cluster.local",
		Cluster: mcPrimary, Network: network, IstioVersion: istioVersion, Region: "r1", Zone: "z1",
	}
}

// fetchEndpoints asks istiod over a raw ADS stream for the echo
// ClusterLoadAssignment and returns its endpoints, sorted by address.
func (m *mcMesh) fetchEndpoints(network string) ([]mcEndpoint, error) {
	return framework.Endpoints(m.ctx, m.istiod.GRPCAddr, mcNode(network), edsCluster)
}

// firstRPCTo calls until an RPC is answered by addr and returns when it
// was; RPCs wait for the channel to be ready, so before the cluster joins
// they wait for endpoints.
func firstRPCTo(ctx context.Context, cc *grpc.ClientConn, addr string, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	var lastErr error
	for ctx.Err() == nil {
		var p peer.Peer
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		if err == nil {
			if host, _, _ := net.SplitHostPort(p.Addr.String()); host == addr {
				return time.Now(), nil
			}
		} else {
			lastErr = err
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no RPC answered by %s within %v (last error %v)", addr, timeout, lastErr)
}

// waitNoEndpoints waits until the client itself has no endpoint left: a
// fail-fast RPC fails with Unavailable several times in a row. (istiod's
// answer to a fresh stream changes before its debounced push reaches
// existing clients.)
func waitNoEndpoints(t *testing.T, ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	var last error
	for failed := 0; failed < 5; {
		if ctx.Err() != nil {
			t.Fatalf("the client still reaches endpoints after %v (last RPC: %v)", timeout, last)
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, last = hc.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if status.Code(last) == codes.Unavailable {
			failed++
		} else {
			failed = 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tunnelMesh is a mesh some tests assemble by hand around a tunnel (the
// chart's tunnel server run by podrun): the token file and istiod
// environment helpers of framework.StartMesh's Tunnel mode.
type tunnelMesh struct {
	*mcMesh
	tokenFile string
}

// writeIstiodToken writes istiod's token for the tunnel's audience to tokenFile.
func (m *tunnelMesh) writeIstiodToken() {
	m.t.Helper()
	(&framework.Clusters{Env: m.env, C: m.c, Kube: m.kube}).WriteIstiodToken(m.t, m.tokenFile)
}

// istiodEnv is the extra environment of the out-of-cluster istiod.
func (m *tunnelMesh) istiodEnv() []string {
	m.t.Helper()
	return framework.IstiodTunnelEnv(m.t, m.c[mcPrimary])
}
