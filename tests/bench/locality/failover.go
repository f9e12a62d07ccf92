//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

const foPort = 7070

// failoverSteps are the failovers measured: which of a service's endpoints
// (on foNodes) go not ready, and which must then get the RPCs.
var failoverSteps = []struct {
	key      string
	notReady []int
	want     int
}{
	{"zone", []int{0}, 1},      // r1/z1 → r1/z2
	{"region", []int{0, 1}, 2}, // r1 → r2
}

// foNamespace holds the failover services, apart from the bench's own
// Services: with two Services it is never grouped, so fo-meshfleet's rule
// is its own (the update path), and nothing done for the failover part
// changes the rules of the bench's namespace. (Before decision 77,
// fo-user's "off" there moved all of them to rules of their own, and at
// 10,000 Services the failover rounds ran beside that rewrite.)
const foNamespace = "bench-failover"

// foNodes are the nodes of c1 the failover services' endpoints run on:
// r1/z1 and r1/z2 (created with the cluster) and r2/z5 (created here).
var foNodes = []string{"n-r1-z1", "n-r1-z2", "n-r2-z5"}

// failoverResult is what failoverBench measured: the failover times and
// istiod's pushes after each failover, by "step/setup", and the load
// average at its start.
type failoverResult struct {
	times  map[string][]time.Duration
	pushes map[string]*foPushes
	load   string
}

// foPushes sums istiod's pushes after the failovers of one step and setup:
// the time from the change to the first push, how many rounds' first push
// merged other config (a rule write) into the endpoint change, and the
// pushes per round.
type foPushes struct {
	first   []time.Duration
	merged  int
	counts  []int
	example string
}

// foPushWindow is how long after a failover istiod's pushes are counted.
const foPushWindow = 1500 * time.Millisecond

// failoverBench measures, for a service ruled by meshfleet ("meshfleet")
// and one ruled by a hand-written Kubernetes DestinationRule ("user"), the
// time from endpoints going not ready to ≥ 99 of 100 consecutive RPCs from
// an r1/z1 client landing in the next locality: r1/z2 when r1/z1 fails
// ("zone"), r2 when all of r1 fails ("region"). Keys are "step/setup";
// meshfleet's rounds alternate between the server's hold-down (-hold-down)
// and none ("meshfleet-nohold"). Each round starts once the rules are
// settled (no update held down) and istiod has been quiet (settle).
func failoverBench(ctx context.Context, kube kubernetes.Interface, cfg *rest.Config, d *localistiod.Istiod, srv *rulesync.Server) (*failoverResult, error) {
	res := &failoverResult{times: map[string][]time.Duration{}, pushes: map[string]*foPushes{}, load: loadAverage()}
	out := res.times
	defer srv.SetHoldDown(*holdDown)
	ilog := &istiodLog{path: d.LogPath}
	setups := []struct {
		key, name string
		addrs     []netip.Addr
	}{{"meshfleet", "fo-meshfleet", genAddrs}, {"user", "fo-user", userAddrs}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: foNodes[2], Labels: map[string]string{topology.LabelRegion: "r2", topology.LabelZone: "z5"}}}
	if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating node %s: %w", node.Name, err)
	}
	if err := createBenchNamespace(ctx, kube, "c1", foNamespace); err != nil {
		return nil, err
	}
	for _, s := range setups {
		if err := createFailoverService(ctx, kube, s.name, s.addrs, s.key == "user"); err != nil {
			return nil, err
		}
		for _, a := range s.addrs {
			l, err := net.Listen("tcp", netip.AddrPortFrom(a, foPort).String())
			if err != nil {
				return nil, err
			}
			gs := grpc.NewServer()
			healthpb.RegisterHealthServer(gs, health.NewServer())
			go func() { _ = gs.Serve(l) }()
			defer gs.Stop()
		}
	}
	if err := applyUserRule(ctx, cfg, "fo-user"); err != nil {
		return nil, err
	}
	srv.Notify()
	for _, s := range setups {
		cc, err := dialXDS(d.GRPCAddr, s.name)
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		home := s.addrs[0].String()
		for _, step := range failoverSteps {
			next := s.addrs[step.want].String()
			for i := range *failover {
				key := step.key + "/" + s.key
				if s.key == "meshfleet" && i%2 == 0 {
					key += "-nohold"
					srv.SetHoldDown(-1)
				} else {
					srv.SetHoldDown(*holdDown)
				}
				if err := setNotReady(ctx, kube, s.name, s.addrs, nil); err != nil {
					return nil, err
				}
				if _, err := waitWindow(ctx, cc, home, 60*time.Second); err != nil {
					return nil, fmt.Errorf("%s: traffic did not settle on r1/z1: %w", s.name, err)
				}
				if err := settle(ctx, srv, ilog); err != nil {
					return nil, err
				}
				if err := ilog.skip(); err != nil {
					return nil, err
				}
				t0 := time.Now()
				if err := setNotReady(ctx, kube, s.name, s.addrs, step.notReady); err != nil {
					return nil, err
				}
				at, err := waitWindow(ctx, cc, next, 60*time.Second)
				if err != nil {
					return nil, fmt.Errorf("%s: no %s failover to %s: %w", s.name, step.key, foNodes[step.want], err)
				}
				out[key] = append(out[key], at.Sub(t0))
				if step.key == "region" {
					if err := countPushes(ctx, ilog, t0, res.pushes, key); err != nil {
						return nil, err
					}
				}
			}
		}
		_ = setNotReady(ctx, kube, s.name, s.addrs, nil)
	}
	return res, nil
}

// settleQuiet is how long istiod must have logged no push before a round
// starts: at 10,000 Services one push takes up to about 3 s to reach the
// client (decision 73), so this only bounds how recent the last one began.
const settleQuiet = 2 * time.Second

// settle waits until the server holds no update down and istiod has begun
// no push for settleQuiet: what was written has been pushed, and nothing
// else (the previous round, the bench's setup) is still being pushed when
// the round's change comes.
func settle(ctx context.Context, srv *rulesync.Server, l *istiodLog) error {
	deadline := time.Now().Add(60 * time.Second)
	quietSince, off := time.Now(), l.offset
	for {
		held := srv.State().Deferred
		pushes, next, err := l.pushesFrom(off)
		if err != nil {
			return err
		}
		off = next
		var last time.Time
		for _, p := range pushes {
			if p.err == nil && p.at.After(last) {
				last = p.at
			}
		}
		if last.After(quietSince) {
			quietSince = last
		}
		if len(held) > 0 {
			quietSince = time.Now()
		}
		if time.Since(quietSince) >= settleQuiet {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not settled after 60s: rule updates held down %v, istiod's last push began %v ago", held, time.Since(last).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// countPushes waits until foPushWindow after t0 and records istiod's push
// lines logged since l's offset under key.
func countPushes(ctx context.Context, l *istiodLog, t0 time.Time, into map[string]*foPushes, key string) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(t0.Add(foPushWindow))):
	}
	pushes, _, err := l.pushesFrom(l.offset)
	if err != nil {
		return err
	}
	p := into[key]
	if p == nil {
		p = &foPushes{}
		into[key] = p
	}
	n := 0
	for _, push := range pushes {
		at, line := push.at, push.line
		if push.err != nil || at.Before(t0) || at.After(t0.Add(foPushWindow)) {
			continue
		}
		if n == 0 {
			p.first = append(p.first, at.Sub(t0))
			if strings.Contains(line, " more") {
				p.merged++
			}
			if p.example == "" || strings.Contains(line, " more") {
				_, msg, _ := strings.Cut(line, pushedLine)
				p.example = pushedLine + msg
			}
		}
		n++
	}
	p.counts = append(p.counts, n)
	return nil
}

// waitWindow calls until 100 consecutive RPCs have ≥ 99 answered by want and
// returns when the first RPC of that window was made.
func waitWindow(ctx context.Context, cc *grpc.ClientConn, want string, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type call struct {
		at time.Time
		ok bool
	}
	var calls []call
	hc := healthpb.NewHealthClient(cc)
	for ctx.Err() == nil {
		var p peer.Peer
		at := time.Now()
		cctx, c := context.WithTimeout(ctx, 2*time.Second)
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		c()
		ok := false
		if err == nil {
			host, _, _ := net.SplitHostPort(p.Addr.String())
			ok = host == want
		}
		calls = append(calls, call{at, ok})
		if len(calls) > 100 {
			calls = calls[1:]
		}
		if len(calls) == 100 {
			n := 0
			for _, c := range calls {
				if c.ok {
					n++
				}
			}
			if n >= 99 {
				return calls[0].at, nil
			}
		}
	}
	return time.Time{}, ctx.Err()
}

func dialXDS(istiod, service string) (*grpc.ClientConn, error) {
	b, _ := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": istiod, "channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []any{"xds_v3"}}},
		"node": map[string]any{
			"id":       "sidecar~198.18.0.10~client.default~default.svc.cluster.local",
			"metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": "default", "CLUSTER_ID": "c1", "ISTIO_VERSION": "1.30.0"},
			"locality": map[string]any{"region": "r1", "zone": "z1"},
		},
	})
	rb, err := xds.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(fmt.Sprintf("xds:///%s.%s.svc.cluster.local:%d", service, foNamespace, foPort), grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// createFailoverService creates a Service with a Pod on each of foNodes and
// their EndpointSlice; off turns meshfleet off for it.
func createFailoverService(ctx context.Context, kube kubernetes.Interface, name string, addrs []netip.Addr, off bool) error {
	labels := map[string]string{"app": name}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: foNamespace, Labels: labels}, Spec: corev1.ServiceSpec{
		Selector: labels, Ports: []corev1.ServicePort{{Name: "grpc", Port: foPort, AppProtocol: ptr("grpc")}}}}
	if off {
		svc.Annotations = map[string]string{locality.AnnotationLocality: "off"}
	}
	if _, err := kube.CoreV1().Services(foNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating service %s: %w", name, err)
	}
	for i, a := range addrs {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, i), Namespace: foNamespace, Labels: labels},
			Spec: corev1.PodSpec{NodeName: foNodes[i], Containers: []corev1.Container{{Name: "echo", Image: "echo"}}}}
		created, err := kube.CoreV1().Pods(foNamespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating pod %s: %w", pod.Name, err)
		}
		created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: a.String(), PodIPs: []corev1.PodIP{{IP: a.String()}}, HostIP: "127.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := kube.CoreV1().Pods(foNamespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	_, err := kube.DiscoveryV1().EndpointSlices(foNamespace).Create(ctx, failoverSlice(name, addrs, nil), metav1.CreateOptions{})
	return err
}

// failoverSlice is the EndpointSlice of addrs (on foNodes), with the ones
// at the indexes in notReady not ready.
func failoverSlice(name string, addrs []netip.Addr, notReady []int) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: foNamespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(foPort)), Protocol: ptr(corev1.ProtocolTCP), AppProtocol: ptr("grpc")}},
	}
	for i, a := range addrs {
		ready := !slices.Contains(notReady, i)
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{a.String()}, NodeName: ptr(foNodes[i]),
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: ptr(false)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: foNamespace, Name: fmt.Sprintf("%s-%d", name, i)},
		})
	}
	return es
}

// setNotReady rewrites the service's EndpointSlice with the endpoints at the
// indexes in notReady not ready, the others ready.
func setNotReady(ctx context.Context, kube kubernetes.Interface, name string, addrs []netip.Addr, notReady []int) error {
	api := kube.DiscoveryV1().EndpointSlices(foNamespace)
	live, err := api.Get(ctx, name+"-1", metav1.GetOptions{})
	if err != nil {
		return err
	}
	es := failoverSlice(name, addrs, notReady)
	es.ResourceVersion = live.ResourceVersion
	_, err = api.Update(ctx, es, metav1.UpdateOptions{})
	return err
}

// applyUserRule writes, as a Kubernetes DestinationRule, what meshfleet
// would generate (locality failover + its outlier detection defaults).
func applyUserRule(ctx context.Context, cfg *rest.Config, name string) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	od := locality.DefaultOutlierDetection()
	dr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"metadata": map[string]any{"name": name, "namespace": foNamespace},
		"spec": map[string]any{
			"host": name + "." + foNamespace + ".svc.cluster.local",
			"trafficPolicy": map[string]any{
				"loadBalancer": map[string]any{"localityLbSetting": map[string]any{"enabled": true,
					"failover": []any{map[string]any{"from": "r1", "to": "r2"}}}},
				"outlierDetection": map[string]any{
					"consecutive5xxErrors": int64(od.Consecutive5xxErrors), "interval": od.Interval.Duration.String(),
					"baseEjectionTime": od.BaseEjectionTime.Duration.String(), "maxEjectionPercent": int64(od.MaxEjectionPercent),
				},
			},
		},
	}}
	_, err = dyn.Resource(schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}).
		Namespace(foNamespace).Create(ctx, dr, metav1.CreateOptions{})
	return err
}

func ptr[T any](v T) *T { return &v }
