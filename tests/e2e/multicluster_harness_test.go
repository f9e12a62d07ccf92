//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/localcluster"
	"github.com/meshfleet/meshfleet/pkg/localistiod"
	"github.com/meshfleet/meshfleet/pkg/localproc"
	"github.com/meshfleet/meshfleet/pkg/netns"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/render"
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
)

const (
	mcNS      = "istio-system"
	mcPrimary = "primary"
)

var mcRemotes = []string{"remote1", "remote2"}

// mcWorkloads: one echo replica per remote cluster, on a Node of its region/zone.
var mcWorkloads = map[string]workload{
	"remote1": {name: "echo-remote1", node: "node-r1-z1", region: "r1", zone: "z1", addr: mcEchoRemote1},
	"remote2": {name: "echo-remote2", node: "node-r2-z2", region: "r2", zone: "z2", addr: mcEchoRemote2},
}

// mcMesh is a primary and two remote API servers sharing one etcd, the
// operator running in process against the primary, and the real istiod run
// out of cluster with the MeshConfig the operator rendered.
type mcMesh struct {
	t      *testing.T
	ctx    context.Context
	env    *testenv.Env
	c      map[string]client.Client
	kube   map[string]kubernetes.Interface
	istiod *localistiod.Istiod
	// opLog is the operator's log file.
	opLog string
}

// mcLogs sends controller-runtime's logs (set once per process) to the
// current test's operator log.
var mcLogs = &switchWriter{}

type switchWriter struct {
	mu   sync.Mutex
	w    io.Writer
	once sync.Once
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return len(p), nil
	}
	return s.w.Write(p)
}

func (s *switchWriter) set(w io.Writer) {
	s.once.Do(func() { ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(s, nil))) })
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

// startMesh starts the three clusters, applies meshfleet's CRDs, starts the
// operator, creates the Istio resource and, once the operator has deployed
// the control plane, starts istiod with the MeshConfig from the rendered
// ConfigMap istio-system/istio (istiod reads meshNetworks from the same
// ConfigMap itself, as it does in a cluster, since no networks file is given).
func startMesh(t *testing.T, spec v1beta1.IstioSpec) *mcMesh {
	t.Helper()
	if err := netns.Setup(mcEchoRemote1, mcEchoRemote2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	env := testenv.Start(t,
		localcluster.ClusterOptions{Name: mcPrimary},
		localcluster.ClusterOptions{Name: "remote1"},
		localcluster.ClusterOptions{Name: "remote2"},
	)
	t.Logf("3 API servers up in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m := &mcMesh{t: t, ctx: ctx, env: env, c: map[string]client.Client{}, kube: map[string]kubernetes.Interface{}}
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range env.Clusters {
		if m.c[name], err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
		m.kube[name] = kubernetes.NewForConfigOrDie(c.Config)
		// No kube-controller-manager: Pods need the default ServiceAccount.
		mustCreate(t, "serviceaccount default/default in "+name, func() error {
			_, err := m.kube[name].CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			return err
		})
	}
	for _, r := range mcRemotes {
		createNodes(ctx, t, m.kube[r], []workload{mcWorkloads[r]})
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, m.c[mcPrimary], crds); err != nil {
		t.Fatalf("applying meshfleet's CRDs: %v", err)
	}
	// Apply waits until the Istio kind is served; the operator's manager
	// also needs RemoteIstio in discovery when it is built.
	m.eventually(30*time.Second, "RemoteIstio kind served", func() error {
		return m.c[mcPrimary].List(ctx, &v1beta1.RemoteIstioList{})
	})

	m.opLog = filepath.Join(env.Dir, "operator.log")
	f, err := os.Create(m.opLog)
	if err != nil {
		t.Fatal(err)
	}
	mcLogs.set(f)
	mgr, err := operator.New(env.Cluster(mcPrimary).Config, operator.Options{MetricsAddr: "0", HealthAddr: "0", RemoteResync: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opCtx, stopOp := context.WithCancel(context.Background())
	opDone := make(chan error, 1)
	go func() { opDone <- mgr.Start(opCtx) }()
	t.Cleanup(func() {
		stopOp()
		if err := <-opDone; err != nil {
			t.Errorf("operator: %v", err)
		}
		if t.Failed() {
			t.Logf("last lines of the operator log %s:\n%s", m.opLog, localproc.TailFile(m.opLog, 40))
		}
		mcLogs.set(nil)
		f.Close()
	})

	mustCreate(t, "namespace istio-system", func() error {
		_, err := m.kube[mcPrimary].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mcNS}}, metav1.CreateOptions{})
		return err
	})
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: mcNS}, Spec: spec}
	mustCreate(t, "Istio istio-system/istio", func() error { return m.c[mcPrimary].Create(ctx, ist) })
	start = time.Now()
	m.eventually(90*time.Second, "Istio ControlPlaneDeployed", func() error {
		got := &v1beta1.Istio{}
		if err := m.c[mcPrimary].Get(ctx, client.ObjectKeyFromObject(ist), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			return fmt.Errorf("conditions: %s", mcConditions(got.Status.Conditions))
		}
		return nil
	})
	t.Logf("operator deployed the control plane in %v", time.Since(start).Round(time.Millisecond))

	cm, err := m.kube[mcPrimary].CoreV1().ConfigMaps(mcNS).Get(ctx, "istio", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the rendered ConfigMap istio-system/istio: %v", err)
	}
	t.Logf("rendered MeshConfig:\n%s\nrendered meshNetworks:\n%s", cm.Data["mesh"], cm.Data["meshNetworks"])
	start = time.Now()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	defer scancel()
	m.istiod = startIstiod(sctx, t, localistiod.Options{
		Kubeconfig: env.Cluster(mcPrimary).Kubeconfig,
		Dir:        filepath.Join(env.Dir, "istiod"),
		ClusterID:  mcPrimary,
		MeshConfig: cm.Data["mesh"],
	})
	t.Logf("istiod ready in %v", time.Since(start).Round(time.Millisecond))
	return m
}

// createEcho creates the echo Service in every cluster and, in each remote,
// its Pod and EndpointSlice, served by a real gRPC server. With injected,
// the Pods carry the label sidecar injection gives them
// (security.istio.io/tlsMode=istio): istiod routes only such endpoints
// through an east-west gateway, since the gateway routes on mTLS SNI.
func (m *mcMesh) createEcho(injected bool) {
	m.t.Helper()
	createEchoService(m.ctx, m.t, m.kube[mcPrimary], nil)
	for _, r := range mcRemotes {
		w := mcWorkloads[r]
		createEchoService(m.ctx, m.t, m.kube[r], []workload{w})
		if injected {
			patch := []byte(`{"metadata":{"labels":{"security.istio.io/tlsMode":"istio"}}}`)
			if _, err := m.kube[r].CoreV1().Pods("default").Patch(m.ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				m.t.Fatalf("labelling pod default/%s in %s as injected: %v", w.name, r, err)
			}
		}
		mustCreate(m.t, "endpointslice default/echo-1 in "+r, func() error {
			_, err := m.kube[r].DiscoveryV1().EndpointSlices("default").Create(m.ctx, echoSlice([]workload{w}, nil), metav1.CreateOptions{})
			return err
		})
		startEchoServer(m.t, w.addr, echoPort)
	}
}

// kubeconfigSecret stores the admin kubeconfig of a remote in the primary,
// for the RemoteIstio's kubeconfigSecretRef.
func (m *mcMesh) kubeconfigSecret(remote string) string {
	m.t.Helper()
	b, err := os.ReadFile(m.env.Cluster(remote).Kubeconfig)
	if err != nil {
		m.t.Fatal(err)
	}
	name := remote + "-kubeconfig"
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: mcNS}, Data: map[string][]byte{"kubeconfig": b}}
	mustCreate(m.t, "secret "+name, func() error { return m.c[mcPrimary].Create(m.ctx, s) })
	return name
}

// createRemoteIstio creates the RemoteIstio of a remote cluster.
func (m *mcMesh) createRemoteIstio(remote, network string) {
	m.t.Helper()
	ri := &v1beta1.RemoteIstio{
		ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: mcNS},
		Spec: v1beta1.RemoteIstioSpec{
			KubeconfigSecretRef: &corev1.LocalObjectReference{Name: remote + "-kubeconfig"},
			PilotAddress:        mcPilotAddress,
			Network:             network,
			// Where the remote's workloads run; the operator labels it for injection.
			AutoInjectionNamespaces: []string{"default"},
		},
	}
	mustCreate(m.t, "RemoteIstio "+remote, func() error { return m.c[mcPrimary].Create(m.ctx, ri) })
}

// waitRemote waits until the RemoteIstio has the condition True.
func (m *mcMesh) waitRemote(remote, cond string, timeout time.Duration) {
	m.t.Helper()
	m.eventually(timeout, fmt.Sprintf("RemoteIstio %s %s", remote, cond), func() error {
		ri := &v1beta1.RemoteIstio{}
		if err := m.c[mcPrimary].Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: remote}, ri); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(ri.Status.Conditions, cond) {
			return fmt.Errorf("conditions: %s", mcConditions(ri.Status.Conditions))
		}
		return nil
	})
}

// rollOut plays the deployment controller for the Deployments the operator
// rendered in a cluster: it reports them rolled out.
func (m *mcMesh) rollOut(cluster string) int {
	m.t.Helper()
	var list appsv1.DeploymentList
	if err := m.c[cluster].List(m.ctx, &list, client.MatchingLabels{render.LabelManagedBy: render.ManagedByValue}); err != nil {
		m.t.Fatal(err)
	}
	for i := range list.Items {
		d := &list.Items[i]
		r := int32(1)
		if d.Spec.Replicas != nil {
			r = *d.Spec.Replicas
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: r, UpdatedReplicas: r, ReadyReplicas: r, AvailableReplicas: r}
		if err := m.c[cluster].Status().Update(m.ctx, d); err != nil {
			m.t.Fatalf("rolling out Deployment %s/%s in %s: %v", d.Namespace, d.Name, cluster, err)
		}
	}
	return len(list.Items)
}

func (m *mcMesh) eventually(timeout time.Duration, what string, f func() error) {
	m.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) || m.ctx.Err() != nil {
			m.t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mcConditions(cs []metav1.Condition) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "[%s=%s %s: %s] ", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

// mcEndpoint is one endpoint of istiod's EDS answer.
type mcEndpoint struct {
	Addr     string // ip:port
	Locality string // region/zone
	Priority uint32
}

func (e mcEndpoint) String() string { return fmt.Sprintf("%s@%s/p%d", e.Addr, e.Locality, e.Priority) }

// mcNode is the xDS node the raw EDS requests are made as: a proxyless gRPC
// client in the primary, in r1/z1, on network (may be empty).
func mcNode(network string) *corev3.Node {
	// PROXY_CONFIG: istioctl proxy-status lists only nodes that carry it.
	md := map[string]any{"GENERATOR": "grpc", "NAMESPACE": "default", "CLUSTER_ID": mcPrimary, "ISTIO_VERSION": istioVersion, "PROXY_CONFIG": map[string]any{}}
	if network != "" {
		md["NETWORK"] = network
	}
	s, _ := structpb.NewStruct(md)
	return &corev3.Node{
		Id:       "sidecar~" + mcClientAddr.String() + "~client.default~default.svc.cluster.local",
		Metadata: s, Locality: &corev3.Locality{Region: "r1", Zone: "z1"},
	}
}

// fetchEndpoints asks istiod over a raw ADS stream for the echo
// ClusterLoadAssignment and returns its endpoints, sorted by address.
func (m *mcMesh) fetchEndpoints(network string) ([]mcEndpoint, error) {
	conn, err := grpc.NewClient(m.istiod.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: mcNode(network), TypeUrl: edsType, ResourceNames: []string{edsCluster}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var out []mcEndpoint
	for _, r := range resp.Resources {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			return nil, err
		}
		for _, le := range cla.Endpoints {
			loc := le.GetLocality().GetRegion() + "/" + le.GetLocality().GetZone()
			for _, lb := range le.LbEndpoints {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, mcEndpoint{
					Addr:     net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue())),
					Locality: loc, Priority: le.Priority,
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}

// waitEndpoints polls istiod's EDS until the endpoints, formatted, equal want.
func (m *mcMesh) waitEndpoints(network string, want []mcEndpoint, timeout time.Duration) time.Duration {
	m.t.Helper()
	start := time.Now()
	wantS := fmt.Sprint(want)
	var got []mcEndpoint
	m.eventually(timeout, "istiod EDS "+wantS, func() error {
		var err error
		if got, err = m.fetchEndpoints(network); err != nil {
			return err
		}
		if fmt.Sprint(got) != wantS {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	took := time.Since(start)
	m.t.Logf("istiod EDS for %s (client network %q): %v", edsCluster, network, got)
	return took
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

func mcParseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM block in %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
