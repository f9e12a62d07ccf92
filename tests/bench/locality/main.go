//go:build e2e

// Command locality measures meshfleet's locality server against real
// kube-apiservers and a real istiod, and prints a table:
//
//   - push latency: a Node's region label changes in one of 3 clusters
//     holding 1,000 services each → the new DestinationRules are written to
//     istiod's stream, received by istiod (the timestamp of its MCP client's
//     log line), and stored and acknowledged by istiod; p50/p99/max, next to
//     a baseline measured in the same run: the same 1,000 rules changed by a
//     direct policy change (no watch, no debounce); plus the server's heap;
//   - failover time: endpoints go not ready → ≥ 99 of 100 consecutive RPCs
//     of a real proxyless gRPC client in r1/z1 land in the next locality
//     (r1/z2 when its zone fails, r2 when its region fails), for a service
//     whose DestinationRule comes from meshfleet over MCP, next to a
//     baseline service with the same rule written by hand as a Kubernetes
//     DestinationRule (istiod's usual path).
//
// It re-executes itself in a private network namespace (pkg/netns) for the
// workload addresses.
//
//	go run -tags e2e ./tests/bench/locality [-services 1000] [-rounds 20]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/localcluster"
	"github.com/meshfleet/meshfleet/pkg/localistiod"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/netns"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/pkg/xds"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

var (
	services = flag.Int("services", 1000, "services per cluster")
	rounds   = flag.Int("rounds", 20, "measured changes per figure")
	failover = flag.Int("failover-rounds", 5, "measured failovers per setup")
)

// Workload addresses for the failover part.
var (
	mcpAddrs  = []netip.Addr{netip.MustParseAddr("198.18.3.1"), netip.MustParseAddr("198.18.3.2"), netip.MustParseAddr("198.18.3.3")}
	userAddrs = []netip.Addr{netip.MustParseAddr("198.18.4.1"), netip.MustParseAddr("198.18.4.2"), netip.MustParseAddr("198.18.4.3")}
)

func main() {
	flag.Parse()
	os.Exit(netns.Main(run, append(append([]netip.Addr{}, mcpAddrs...), userAddrs...)...))
}

func run() int {
	if err := bench(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// cluster c1 is r1 (z1, z2), c2 is r2 (z3), c3 is r3 (z4).
var clusterNodes = map[string][][3]string{
	"c1": {{"n-r1-z1", "r1", "z1"}, {"n-r1-z2", "r1", "z2"}},
	"c2": {{"n-r2-z3", "r2", "z3"}},
	"c3": {{"n-r3-z4", "r3", "z4"}},
}

func bench() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	env, stop, err := testenv.StartShared(ctx, "", localcluster.ClusterOptions{Name: "c1"}, localcluster.ClusterOptions{Name: "c2"}, localcluster.ClusterOptions{Name: "c3"})
	if err != nil {
		return err
	}
	defer stop()
	kubes := map[string]kubernetes.Interface{}
	cfgs := map[string]*rest.Config{}
	for name := range clusterNodes {
		cfg := rest.CopyConfig(env.Cluster(name).Config)
		cfg.QPS, cfg.Burst = 500, 1000
		cfgs[name] = cfg
		kubes[name] = kubernetes.NewForConfigOrDie(cfg)
	}
	if err := localistiod.InstallCRDs(ctx, cfgs["c1"]); err != nil {
		return err
	}
	if _, err := kubes["c1"].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// No kube-controller-manager: Pods need the default ServiceAccount.
	if _, err := kubes["c1"].CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	start := time.Now()
	for name, nodes := range clusterNodes {
		if err := populate(ctx, kubes[name], name, nodes, *services); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "created %d services × %d clusters in %v\n", *services, len(clusterNodes), time.Since(start).Round(time.Second))

	// The locality server, watching all three clusters.
	var policyFlip atomic.Bool
	ev := &pushEvents{sent: make(chan time.Time, 1024), acked: make(chan time.Time, 1024)}
	var srv *xds.Server
	w, err := topology.NewWatcher(cfgs, topology.WatcherOptions{OnChange: func() {
		if srv != nil {
			srv.Notify()
		}
	}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	srv, err = xds.NewServer(xds.Options{
		Snapshot: w.Snapshot,
		Policy: func() locality.Policy {
			if policyFlip.Load() {
				return locality.Policy{Failover: []locality.Failover{{From: "r1", To: "r3"}}}
			}
			return locality.Policy{Failover: []locality.Failover{{From: "r1", To: "r2"}}}
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnPush: func(string, time.Duration) { ev.record(ev.sent) },
		OnAck:  func(string, time.Duration) { ev.record(ev.acked) },
	})
	if err != nil {
		return err
	}
	w.Start(ctx)
	if err := w.WaitForSync(ctx); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = srv.Run(ctx, l) }()
	mesh := fmt.Sprintf("localityLbSetting:\n  enabled: true\nconfigSources:\n- address: xds://%s\n- address: k8s://\n", l.Addr())
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: env.Cluster("c1").Kubeconfig, Dir: filepath.Join(env.Dir, "istiod"), ClusterID: "c1", MeshConfig: mesh,
	})
	if err != nil {
		return err
	}
	defer d.Stop()
	time.Sleep(2 * time.Second) // istiod's first full set
	ilog := &istiodLog{path: d.LogPath}

	// Push latency: relabel the r3 node of c3 between r3 and r4: every
	// service's failover entries change.
	nodes := kubes["c3"].CoreV1().Nodes()
	var pipeline, direct pushTimes
	for i := range *rounds {
		region := "r4"
		if i%2 == 1 {
			region = "r3"
		}
		n, err := nodes.Get(ctx, "n-r3-z4", metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels[topology.LabelRegion] = region
		err = pipeline.measure(ev, ilog, func() error {
			_, err := nodes.Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("relabelling node n-r3-z4 to %s: %w", region, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for range *rounds {
		policyFlip.Store(!policyFlip.Load())
		if err := direct.measure(ev, ilog, func() error { return srv.Sync(time.Now()) }); err != nil {
			return fmt.Errorf("direct policy change: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rules := 0
	for _, dec := range srv.State().Decisions {
		if dec.Rule != nil {
			rules++
		}
	}

	fo, err := failoverBench(ctx, kubes["c1"], cfgs["c1"], d, srv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover part failed:", err)
	}

	fmt.Printf("\nlocality server, %d services × %d clusters (%d DestinationRules served), real istiod\n\n", *services, len(clusterNodes), rules)
	row := func(name string, ds []time.Duration) {
		fmt.Printf("%-66s %9s %9s %9s\n", name, pct(ds, 50), pct(ds, 99), pct(ds, 100))
	}
	fmt.Printf("%-66s %9s %9s %9s\n", "push latency per round, from the change to", "p50", "p99", "max")
	fmt.Println("node label change (watch + debounce + translate + push):")
	row("  written to istiod's stream", pipeline.sent)
	row("  received by istiod (its adsc log line)", pipeline.received)
	row("  stored and acknowledged by istiod", pipeline.acked)
	fmt.Println("baseline: direct policy change (translate + push only):")
	row("  written to istiod's stream", direct.sent)
	row("  received by istiod (its adsc log line)", direct.received)
	row("  stored and acknowledged by istiod", direct.acked)
	fmt.Printf("\nprocess heap in use after GC (server + informers of 3 clusters + bench clients): %.1f MiB\n", float64(ms.HeapInuse)/(1<<20))
	if fo != nil {
		fmt.Printf("\n%-66s %9s %9s %9s\n", "failover time (not ready → ≥99/100 RPCs in the next locality)", "p50", "p99", "max")
		for _, step := range failoverSteps {
			row(step.key+": meshfleet DestinationRule over MCP", fo[step.key+"/mcp"])
			row(step.key+": baseline, same rule as a Kubernetes DestinationRule", fo[step.key+"/user"])
		}
	}
	return err
}

// pushEvents are the times the server wrote DestinationRules to istiod's
// stream and istiod acknowledged them.
type pushEvents struct{ sent, acked chan time.Time }

func (e *pushEvents) record(ch chan time.Time) {
	select {
	case ch <- time.Now():
	default:
	}
}

func (e *pushEvents) drain() {
	for _, ch := range []chan time.Time{e.sent, e.acked} {
		for len(ch) > 0 {
			<-ch
		}
	}
}

// pushTimes are one figure's rounds: the time from a change to the new
// DestinationRules being written to istiod's stream, received by istiod,
// and acknowledged by it.
type pushTimes struct{ sent, received, acked []time.Duration }

// measure makes one change and records when its push was written, received
// and acknowledged.
func (p *pushTimes) measure(ev *pushEvents, ilog *istiodLog, change func() error) error {
	ev.drain()
	if err := ilog.skip(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := change(); err != nil {
		return err
	}
	var sent, acked time.Time
	for _, w := range []struct {
		ch   chan time.Time
		at   *time.Time
		what string
	}{{ev.sent, &sent, "written to istiod's stream"}, {ev.acked, &acked, "acknowledged by istiod"}} {
		select {
		case *w.at = <-w.ch:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("the new DestinationRules were not %s within 30s", w.what)
		}
	}
	received, err := ilog.received()
	if err != nil {
		return err
	}
	p.sent = append(p.sent, sent.Sub(t0))
	p.received = append(p.received, received.Sub(t0))
	p.acked = append(p.acked, acked.Sub(t0))
	return nil
}

// istiodLog reads, from istiod's log, when its MCP client received
// DestinationRules: it logs each response it receives, with a microsecond
// timestamp, before it stores the resources.
type istiodLog struct {
	path   string
	offset int64
}

const receivedLine = "\tadsc\tReceived\ttype=networking.istio.io/v1/DestinationRule "

// skip moves past what the log holds now.
func (l *istiodLog) skip() error {
	fi, err := os.Stat(l.path)
	if err != nil {
		return err
	}
	l.offset = fi.Size()
	return nil
}

// received returns the time of the last DestinationRule response logged
// since skip.
func (l *istiodLog) received() (time.Time, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	if _, err := f.Seek(l.offset, io.SeekStart); err != nil {
		return time.Time{}, err
	}
	var last time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, receivedLine) {
			continue
		}
		ts, _, _ := strings.Cut(line, "\t")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return time.Time{}, fmt.Errorf("istiod log %s: timestamp of %q: %w", l.path, line, err)
		}
		last = at
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, fmt.Errorf("reading istiod log %s: %w", l.path, err)
	}
	if last.IsZero() {
		return time.Time{}, fmt.Errorf("istiod log %s: no %q line after the change", l.path, strings.TrimSpace(receivedLine))
	}
	return last, nil
}

// populate creates the nodes, and n services each with one ready endpoint
// per node of the cluster.
func populate(ctx context.Context, kube kubernetes.Interface, cluster string, nodes [][3]string, n int) error {
	for _, nd := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nd[0], Labels: map[string]string{topology.LabelRegion: nd[1], topology.LabelZone: nd[2]}}}
		if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("cluster %s: creating node %s: %w", cluster, nd[0], err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("svc-%04d", i)
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.ServiceSpec{
				ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}
			if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				errs <- err
				return
			}
			es := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
			}
			for j, nd := range nodes {
				ready := true
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
					Addresses: []string{fmt.Sprintf("198.19.%d.%d", i/250, (i%250)+j)}, NodeName: &nd[0],
					Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				})
			}
			if _, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("cluster %s: %w", cluster, err)
	}
	return nil
}

// pct returns the p-th percentile of ds (100 = max), rounded.
func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p+99)/100 - 1
	if i < 0 {
		i = 0
	}
	return s[i].Round(100 * time.Microsecond).String()
}
