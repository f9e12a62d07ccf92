//go:build e2e

// Command join measures how long a cluster takes to join the mesh: from
// creating its RemoteIstio in the primary to the first RPC of a real
// proxyless gRPC client in the primary answered by a server in the new
// cluster, through the real istiod. The baseline, measured in the same run
// against the same clusters, istiod and client, is the istioctl way without
// the operator: a remote secret written by hand (the remote's admin
// kubeconfig, label istio/multiCluster=true). The difference is what the
// operator costs: connecting, issuing the intermediate CA, installing the
// remote pieces (Istio's CRDs, the reader account, the injector), writing
// the remote secret with a reader token.
//
// Each round joins and then removes the cluster (deleting the RemoteIstio
// cleans the remote up, except Istio's CRDs, which stay by design); round 1
// joins a fresh cluster, later rounds find the CRDs in place.
//
// It re-executes itself in a private network namespace (internal/netns) for the
// workload address.
//
//	go run -tags e2e ./tests/bench/join [-rounds 5]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

var rounds = flag.Int("rounds", 5, "joins measured per flow")

var echoAddr = netip.MustParseAddr("198.18.5.1")

const (
	ns       = "istio-system"
	remote   = "remote1"
	host     = "echo.default.svc.cluster.local"
	port     = 7070
	byHand   = "istio-remote-secret-by-hand"
	joinWait = 2 * time.Minute
)

func main() {
	flag.Parse()
	os.Exit(netns.Main(run, echoAddr))
}

func run() int {
	if err := bench(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

type env struct {
	ctx context.Context
	env *testenv.Env
	pc  client.Client // primary
	rc  client.Client // remote
	cc  *grpc.ClientConn
}

func bench() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	te, stop, err := testenv.StartShared(ctx, "", localcluster.ClusterOptions{Name: "primary"}, localcluster.ClusterOptions{Name: remote})
	if err != nil {
		return err
	}
	defer stop()
	scheme, err := operator.Scheme()
	if err != nil {
		return err
	}
	e := &env{ctx: ctx, env: te}
	if e.pc, err = client.New(te.Cluster("primary").Config, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if e.rc, err = client.New(te.Cluster(remote).Config, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	crds, err := install.CRDs()
	if err != nil {
		return err
	}
	if err := install.Apply(ctx, e.pc, crds); err != nil {
		return err
	}
	if err := poll(ctx, 30*time.Second, func() error { return e.pc.List(ctx, &v1beta1.RemoteIstioList{}) }); err != nil {
		return fmt.Errorf("RemoteIstio kind not served: %w", err)
	}

	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(io.Discard, nil)))
	mgr, err := operator.New(te.Cluster("primary").Config, operator.Options{MetricsAddr: "0", HealthAddr: "0"})
	if err != nil {
		return err
	}
	opCtx, stopOp := context.WithCancel(ctx)
	defer stopOp()
	go func() { _ = mgr.Start(opCtx) }()

	if err := e.pc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: ns}, Spec: v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: "primary",
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
	}}
	if err := e.pc.Create(ctx, ist); err != nil {
		return err
	}
	if err := poll(ctx, 90*time.Second, func() error {
		got := &v1beta1.Istio{}
		if err := e.pc.Get(ctx, client.ObjectKeyFromObject(ist), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			return errors.New("control plane not deployed")
		}
		return nil
	}); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{}
	if err := e.pc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "istio"}, cm); err != nil {
		return err
	}
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: te.Cluster("primary").Kubeconfig, Dir: filepath.Join(te.Dir, "istiod"),
		ClusterID: "primary", MeshConfig: cm.Data["mesh"],
	})
	if err != nil {
		return err
	}
	defer d.Stop()

	if err := e.workloads(); err != nil {
		return err
	}
	kc, err := os.ReadFile(te.Cluster(remote).Kubeconfig)
	if err != nil {
		return err
	}
	if err := e.pc.Create(ctx, install.KubeconfigSecret(ns, remote+"-kubeconfig", kc)); err != nil {
		return err
	}
	if e.cc, err = dial(d.GRPCAddr); err != nil {
		return err
	}
	defer e.cc.Close()

	type row struct{ baseline, join, secret time.Duration }
	var rows []row
	for i := range *rounds {
		var r row
		if r.baseline, err = e.joinByHand(kc); err != nil {
			return fmt.Errorf("round %d, baseline: %w", i+1, err)
		}
		if r.join, r.secret, err = e.joinWithOperator(); err != nil {
			return fmt.Errorf("round %d, meshfleet: %w", i+1, err)
		}
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "round %d: baseline %v, meshfleet %v (remote secret written after %v)\n", i+1, r.baseline, r.join, r.secret)
	}

	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Printf("\nJoin: create → first RPC answered in the new cluster (real istiod, real grpc-go xDS client; %d rounds)\n\n", len(rows))
	fmt.Printf("%-26s %-32s %-30s %s\n", "round", "baseline: remote secret by hand", "meshfleet: RemoteIstio", "of which: operator until remote secret")
	var b, j, s []time.Duration
	for i, r := range rows {
		name := fmt.Sprint(i + 1)
		if i == 0 {
			name += " (fresh cluster)"
		}
		fmt.Printf("%-26s %-32s %-30s %s\n", name, ms(r.baseline), ms(r.join), ms(r.secret))
		b, j, s = append(b, r.baseline), append(j, r.join), append(s, r.secret)
	}
	fmt.Printf("%-26s %-32s %-30s %s\n", "median", ms(median(b)), ms(median(j)), ms(median(s)))
	return nil
}

// workloads creates the echo Service in both clusters and, in the remote, a
// Node in r1/z1, a Pod and its EndpointSlice at echoAddr, served by a real
// gRPC server.
func (e *env) workloads() error {
	ctx := e.ctx
	for _, c := range []client.Client{e.pc, e.rc} {
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"}}); err != nil {
			return err
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"}, Ports: []corev1.ServicePort{{
				Name: "grpc", Port: port, Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("grpc"),
			}}},
		}
		if err := c.Create(ctx, svc); err != nil {
			return err
		}
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-r1-z1", Labels: map[string]string{
		corev1.LabelTopologyRegion: "r1", corev1.LabelTopologyZone: "z1"}}}
	if err := e.rc.Create(ctx, node); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-1", Namespace: "default", Labels: map[string]string{"app": "echo"}},
		Spec:       corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "echo", Image: "echo"}}},
	}
	if err := e.rc.Create(ctx, pod); err != nil {
		return err
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: echoAddr.String(), PodIPs: []corev1.PodIP{{IP: echoAddr.String()}},
		HostIP: "127.0.0.1", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := e.rc.Status().Update(ctx, pod); err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-1", Namespace: "default", Labels: map[string]string{
			discoveryv1.LabelServiceName: "echo", discoveryv1.LabelManagedBy: "meshfleet-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP), AppProtocol: ptr.To("grpc")}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{echoAddr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(node.Name), Zone: ptr.To("z1"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: pod.Name},
		}},
	}
	if err := e.rc.Create(ctx, slice); err != nil {
		return err
	}
	l, err := net.Listen("tcp", netip.AddrPortFrom(echoAddr, port).String())
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(l) }()
	return nil
}

// joinByHand: the baseline.
func (e *env) joinByHand(kubeconfig []byte) (time.Duration, error) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: byHand, Namespace: ns,
			Labels:      map[string]string{render.LabelMultiCluster: "true"},
			Annotations: map[string]string{render.AnnotationClusterName: remote}},
		Data: map[string][]byte{remote: kubeconfig},
	}
	start := time.Now()
	if err := e.pc.Create(e.ctx, s); err != nil {
		return 0, err
	}
	at, err := e.firstRPC()
	if err != nil {
		return 0, err
	}
	if err := e.pc.Delete(e.ctx, s); err != nil {
		return 0, err
	}
	return at.Sub(start), e.waitNoEndpoints()
}

// joinWithOperator creates the RemoteIstio and returns the time to the first
// RPC and to the remote secret; then deletes it and waits until it is gone.
func (e *env) joinWithOperator() (time.Duration, time.Duration, error) {
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: ns}, Spec: v1beta1.RemoteIstioSpec{
		KubeconfigSecretRef: &corev1.LocalObjectReference{Name: remote + "-kubeconfig"}, PilotAddress: "198.18.5.10",
	}}
	secretAt := make(chan time.Time, 1)
	wctx, stopWatch := context.WithCancel(e.ctx)
	defer stopWatch()
	go func() {
		for wctx.Err() == nil {
			if err := e.pc.Get(wctx, client.ObjectKey{Namespace: ns, Name: render.RemoteSecretName(remote)}, &corev1.Secret{}); err == nil {
				secretAt <- time.Now()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	if err := e.pc.Create(e.ctx, ri); err != nil {
		return 0, 0, err
	}
	at, err := e.firstRPC()
	if err != nil {
		return 0, 0, err
	}
	var sec time.Duration
	select {
	case t := <-secretAt:
		sec = t.Sub(start)
	case <-time.After(5 * time.Second):
	}
	if err := e.pc.Delete(e.ctx, ri); err != nil {
		return 0, 0, err
	}
	if err := poll(e.ctx, time.Minute, func() error {
		err := e.pc.Get(e.ctx, client.ObjectKeyFromObject(ri), &v1beta1.RemoteIstio{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("RemoteIstio %s still there: %v", remote, err)
	}); err != nil {
		return 0, 0, err
	}
	return at.Sub(start), sec, e.waitNoEndpoints()
}

// firstRPC calls (waiting for the channel to become ready) until a call is
// answered by the echo server in the remote.
func (e *env) firstRPC() (time.Time, error) {
	ctx, cancel := context.WithTimeout(e.ctx, joinWait)
	defer cancel()
	hc := healthpb.NewHealthClient(e.cc)
	var last error
	for ctx.Err() == nil {
		var p peer.Peer
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		if err == nil {
			if h, _, _ := net.SplitHostPort(p.Addr.String()); h == echoAddr.String() {
				return time.Now(), nil
			}
		}
		last = err
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no RPC answered by %s within %v (last error %v)", echoAddr, joinWait, last)
}

// waitNoEndpoints waits until the client has no endpoint left.
func (e *env) waitNoEndpoints() error {
	hc := healthpb.NewHealthClient(e.cc)
	return poll(e.ctx, time.Minute, func() error {
		for range 5 {
			ctx, cancel := context.WithTimeout(e.ctx, time.Second)
			_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if status.Code(err) != codes.Unavailable {
				return fmt.Errorf("the client still reaches an endpoint (%v)", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	})
}

func dial(xdsAddr string) (*grpc.ClientConn, error) {
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": xdsAddr, "channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": "sidecar~198.18.5.20~client.default~default.svc.cluster.local",
			"metadata": map[string]any{
				"GENERATOR": "grpc", "NAMESPACE": "default", "CLUSTER_ID": "primary", "ISTIO_VERSION": "1.30.0",
			},
			"locality": map[string]any{"region": "r1", "zone": "z1"},
		},
	})
	if err != nil {
		return nil, err
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(fmt.Sprintf("xds:///%s:%d", host, port), grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
