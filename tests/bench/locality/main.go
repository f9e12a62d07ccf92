//go:build e2e

// Command locality measures meshfleet's locality server against real
// kube-apiservers and a real istiod that reads the server's rules from the
// API server, and prints a table:
//
//   - write latency: a change (one service's endpoints, or a Node's region
//     label in one of 3 clusters holding 1,000 services each) → the
//     DestinationRules written to the API server → received by istiod (its
//     config handler got the first event of the push's debounce window: the
//     push time less the window istiod logs) → istiod pushing them (the
//     timestamp of its "Push debounce stable" log line) → ACKed by a real
//     grpc-go proxyless xDS client in r1/z1 subscribed to the changed
//     Service (istiod received the client's ACK of every response it sent
//     it in that push, matched by nonce in istiod's ads debug log; ack.go,
//     ARCHITECTURE decision 69), each ACKed push checked, in istiod's
//     config_dump of the client, to try the rule's failover target first;
//     p50/p99/max, next to baselines measured in the same run: the same
//     rules changed by a direct policy change (no watch, no debounce), and
//     a hand-written DestinationRule of the same shape, for a Service of
//     the same shape, changed the same way (istiod's own path); plus the
//     server's memory before the MCP feed starts and at the end;
//   - the same two changes on a second istiod that reads the rules over
//     MCP (configSources xds://) from an in-process server fed by the same
//     translation (mcp.go): served, received by it and pushed, with the
//     feed's own computation and MCP's hop apart (ARCHITECTURE decision 67);
//   - failover time: endpoints go not ready → ≥ 99 of 100 consecutive RPCs
//     of a real proxyless gRPC client in r1/z1 land in the next locality
//     (r1/z2 when its zone fails, r2 when its region fails), for a service
//     whose DestinationRule meshfleet generates (its rounds alternating
//     between the writer's hold-down, -hold-down, and none: ARCHITECTURE
//     decision 75), next to a baseline service with the same rule written
//     by hand, and istiod's pushes after each region failover.
//
// It re-executes itself in a private network namespace (internal/netns) for the
// workload addresses.
//
// Each size (-services, default 1,000 and 10,000) gets fresh clusters and
// istiod; on them each mode (-modes) runs its own server in turn: grouped
// (rulesync.Group: one rule per namespace where its Services share one)
// and per-service (one rule per Service), so both are measured in one run
// next to the same hand-written baseline.
//
// Each figure with an xDS client also shows istiod's stages of the push to
// it, from its log (push context built, first and last response sent);
// -istiod-cpuprofile records istiod's CPU profile over the rounds, and
// -istiod-env measures the first mode again on a fresh istiod with extra
// settings (ARCHITECTURE decision 73).
//
//	go run -tags e2e ./tests/bench/locality [-services 1000,10000] [-modes grouped,per-service] [-per-service-max 1000] [-rounds 10] [-failover-rounds 5] [-hold-down 300ms] [-mcp=false] [-istiod-cpuprofile FILE] [-istiod-env KEY=VALUE,…]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

var (
	sizes    = flag.String("services", "1000,10000", "services per cluster; a comma-separated list runs each size in turn (fresh clusters and istiod)")
	modes    = flag.String("modes", "grouped,per-service", "how the server writes, each measured in turn on the same clusters and istiod: grouped (one rule per namespace where its Services share one; the default) and per-service (one rule per Service)")
	rounds   = flag.Int("rounds", 10, "measured changes per figure")
	perMax   = flag.Int("per-service-max", 1000, "largest size measured in the per-service mode (a change of every rule there is one write per service: minutes at 10,000)")
	failover = flag.Int("failover-rounds", 5, "measured failovers per setup (with the first mode)")
	memProf  = flag.String("memprofile", "", "write a heap profile of the server alone (after its first write of every rule, before the MCP feed) to this file")
	cpuProf  = flag.String("istiod-cpuprofile", "", "write a CPU profile of istiod (the one reading the API server) over the measured rounds to this file; later passes (modes, -istiod-env) to FILE-2, FILE-3, …")
	envFlag  = flag.String("istiod-env", "", "after the modes, measure the first mode again on a fresh istiod with these extra KEY=VALUE settings (comma-separated), on the same clusters: e.g. PILOT_DEBOUNCE_AFTER=10ms")
	holdDown = flag.Duration("hold-down", rulesync.DefaultHoldDown, "the writer's hold-down of updates that change only failover entries no request uses now (rulesync.Options.HoldDown; negative: none); the failover part alternates its rounds without it and with it")
	withMCP  = flag.Bool("mcp", true, "also measure a second istiod reading the rules over MCP (its feed and watchers run in the same process: the memory figures then include them)")
)

// services is the size being measured.
var services = new(int)

// Workload addresses for the failover part.
var (
	genAddrs  = []netip.Addr{netip.MustParseAddr("198.18.3.1"), netip.MustParseAddr("198.18.3.2"), netip.MustParseAddr("198.18.3.3")}
	userAddrs = []netip.Addr{netip.MustParseAddr("198.18.4.1"), netip.MustParseAddr("198.18.4.2"), netip.MustParseAddr("198.18.4.3")}
)

func main() {
	flag.Parse()
	os.Exit(netns.Main(run, append(append([]netip.Addr{}, genAddrs...), userAddrs...)...))
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
	var errs []error
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-services %q: want a comma-separated list of positive numbers", *sizes)
		}
		*services = n
		if err := benchSize(); err != nil {
			fmt.Fprintf(os.Stderr, "%d services: %v\n", n, err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// benchSize measures *services services × 3 clusters in each mode.
func benchSize() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	loadAtStart = loadAverage()
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
	startIstiod := func(dir string, extraEnv []string) (*localistiod.Istiod, error) {
		return localistiod.Start(ctx, localistiod.Options{
			Kubeconfig: env.Cluster("c1").Kubeconfig, Dir: filepath.Join(env.Dir, dir), ClusterID: "c1",
			MeshConfig: "localityLbSetting:\n  enabled: true\n",
			Env:        extraEnv,
			// ads:debug logs each client's ACK (ackedAfter).
			Args: []string{istiodLogLevel},
			// istiod reads every service of 3 clusters before it is ready.
			StartTimeout: localistiod.DefaultStartTimeout + time.Duration(*services)*30*time.Millisecond,
		})
	}
	d, err := startIstiod("istiod", nil)
	if err != nil {
		return err
	}
	defer d.Stop()
	// A second istiod reading its config only from an in-process MCP
	// server, fed by the same translation: the MCP path beside the API's.
	var dm *localistiod.Istiod
	var mcpd *mcpIstiod
	if *withMCP {
		ms, err := startMCPServer()
		if err != nil {
			return err
		}
		defer ms.Stop()
		dm, err = localistiod.Start(ctx, localistiod.Options{
			Kubeconfig: env.Cluster("c1").Kubeconfig, Dir: filepath.Join(env.Dir, "istiod-mcp"), ClusterID: "c1",
			MeshConfig:   "localityLbSetting:\n  enabled: true\nconfigSources:\n- address: xds://" + ms.Addr() + "\n",
			Args:         []string{istiodLogLevel},
			StartTimeout: localistiod.DefaultStartTimeout + time.Duration(*services)*30*time.Millisecond,
		})
		if err != nil {
			return fmt.Errorf("istiod reading MCP: %w", err)
		}
		defer dm.Stop()
		mcpd = &mcpIstiod{s: ms, log: &istiodLog{path: dm.LogPath}}
	}
	drs := dynamic.NewForConfigOrDie(cfgs["c1"]).Resource(rulesync.GVR).Namespace("istio-system")
	// A hand-written DestinationRule of the same shape as a generated one,
	// for a Service shaped as the measured ones that meshfleet leaves alone:
	// the baseline of istiod's own path (API server → istiod → push → ACK).
	hand := handRule("r2")
	if hand, err = drs.Create(ctx, hand, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the hand-written rule: %w", err)
	}
	// Real grpc-go xDS clients in r1/z1 holding the changed Service's and
	// the baseline Service's config, on each istiod.
	acks := map[string]*ackClient{}
	startAcks := func(d *localistiod.Istiod, keys ...string) error {
		for _, key := range keys {
			service := "svc-0000.default"
			if key == "api-hand" {
				service = handService + "." + handNamespace
			}
			ac, err := startAckClient(d.GRPCAddr, service, &istiodLog{path: d.LogPath})
			if err != nil {
				return err
			}
			acks[key] = ac
		}
		return nil
	}
	defer func() {
		for _, ac := range acks {
			ac.Close()
		}
	}()
	if err := startAcks(d, "api", "api-hand"); err != nil {
		return err
	}
	if dm != nil {
		if err := startAcks(dm, "mcp"); err != nil {
			return err
		}
	}
	var errs []error
	var first string
	groupMins := map[string]int{}
	for _, mode := range strings.Split(*modes, ",") {
		groupMin := 0
		switch mode = strings.TrimSpace(mode); mode {
		case "grouped":
		case "per-service":
			groupMin = -1
			if *services > *perMax {
				fmt.Fprintf(os.Stderr, "%d services: per-service mode skipped (above -per-service-max %d)\n", *services, *perMax)
				continue
			}
		default:
			return fmt.Errorf("-modes: unknown mode %q (grouped, per-service)", mode)
		}
		if first == "" {
			first = mode
		}
		groupMins[mode] = groupMin
		if err := benchMode(ctx, mode, groupMin, mode == first, kubes, cfgs, d, mcpd, acks, drs, &hand); err != nil {
			fmt.Fprintf(os.Stderr, "%d services, %s: %v\n", *services, mode, err)
			errs = append(errs, err)
		}
	}
	if *envFlag == "" || first == "" {
		return errors.Join(errs...)
	}
	// The first mode again, on a fresh istiod with the extra settings (the
	// MCP istiod, if any, left out): a knob against istiod's defaults on
	// the same clusters in one run.
	d.Stop()
	for _, key := range []string{"api", "api-hand"} {
		acks[key].Close()
		delete(acks, key)
	}
	// The server writes nothing where its rules are already in place, and
	// its pass starts from its first write: remove them first.
	if err := drs.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: locality.LabelManagedBy + "=" + locality.ManagedBy}); err != nil {
		return errors.Join(append(errs, fmt.Errorf("removing the server's rules before the -istiod-env pass: %w", err))...)
	}
	extra := strings.Split(*envFlag, ",")
	if d, err = startIstiod("istiod-env", extra); err != nil {
		return errors.Join(append(errs, fmt.Errorf("istiod with %s: %w", *envFlag, err))...)
	}
	defer d.Stop()
	if err := startAcks(d, "api", "api-hand"); err != nil {
		return errors.Join(append(errs, err)...)
	}
	istiodSetting = "istiod with " + *envFlag
	if err := benchMode(ctx, first, groupMins[first], false, kubes, cfgs, d, nil, acks, drs, &hand); err != nil {
		fmt.Fprintf(os.Stderr, "%d services, %s, %s: %v\n", *services, first, istiodSetting, err)
		errs = append(errs, err)
	}
	istiodSetting = ""
	return errors.Join(errs...)
}

// profiles counts the istiod CPU profiles written (-istiod-cpuprofile).
var profiles int

// nextProfilePath is where the next istiod CPU profile goes: the flag's
// file, then FILE-2, FILE-3, ….
func nextProfilePath() string {
	profiles++
	if profiles == 1 {
		return *cpuProf
	}
	return fmt.Sprintf("%s-%d", *cpuProf, profiles)
}

// istiodSetting names istiod's settings in the table's header where they
// are not its defaults (-istiod-env).
var istiodSetting string

// istiodLogLevel adds istiod's ads debug lines (each response's nonce and
// each ACK) to its default info level.
const istiodLogLevel = "--log_output_level=default:info,ads:debug"

// benchMode runs one server (grouped or per-service rules) on the clusters
// until its rounds are measured, then stops it.
func benchMode(ctx context.Context, mode string, groupMin int, withFailover bool, kubes map[string]kubernetes.Interface, cfgs map[string]*rest.Config,
	d *localistiod.Istiod, mcpd *mcpIstiod, acks map[string]*ackClient, drs dynamic.ResourceInterface, handp **unstructured.Unstructured) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hand := *handp
	defer func() { *handp = hand }()
	// The locality server, watching all three clusters, writing into c1.
	// The policy fails r1 over to r2, or, flipped, to the region of c3's
	// node (r3 or r4, as relabelled): every Service has endpoints in both,
	// so each flip changes every rule.
	var policyFlip atomic.Bool
	var c3Region atomic.Value
	c3Node, err := kubes["c3"].CoreV1().Nodes().Get(ctx, "n-r3-z4", metav1.GetOptions{})
	if err != nil {
		return err
	}
	c3Region.Store(c3Node.Labels[topology.LabelRegion])
	policySource := func() locality.Policy {
		if policyFlip.Load() {
			return locality.Policy{Failover: []locality.Failover{{From: "r1", To: c3Region.Load().(string)}}}
		}
		return locality.Policy{Failover: []locality.Failover{{From: "r1", To: "r2"}}}
	}
	written := make(chan time.Time, 1024)
	srv, err := pipeline.New(pipeline.Options{
		Clusters: cfgs, PrimaryCluster: "c1", GroupMin: groupMin, HoldDown: *holdDown,
		PolicySource: policySource,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer:   prometheus.NewRegistry(),
		OnWrite: func(n int, _ time.Duration) {
			lastWrites.Store(int64(n))
			select {
			case written <- time.Now():
			default:
			}
		},
	})
	if err != nil {
		return err
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { _ = srv.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	first, err := waitWritten(written, 5*time.Minute+2*changeTimeout())
	if err != nil {
		return fmt.Errorf("first write of every rule: %w", err)
	}
	// The first writes follow the clusters as they sync; the initial
	// write is done when no write follows for 3 s.
	for last := first; ; {
		select {
		case last = <-written:
			continue
		case <-time.After(3 * time.Second):
		}
		first = last
		break
	}
	firstWrite := first.Sub(start)
	// The server's memory alone (with the bench's clients), before the MCP
	// feed's watchers start in the same process.
	serverRSS, serverHeap := memAfterGC()
	if *memProf != "" {
		if err := writeHeapProfile(*memProf); err != nil {
			fmt.Fprintln(os.Stderr, "heap profile:", err)
		}
	}
	// The feed stops before the failover part, so that its full
	// recomputation on every change does not share the cores with it.
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	if mcpd != nil {
		if err := mcpFeed(feedCtx, mcpd.s, cfgs, groupMin, policySource); err != nil {
			return fmt.Errorf("MCP feed: %w", err)
		}
		time.Sleep(2 * time.Second) // istiod takes the full set
	}
	ilog := &istiodLog{path: d.LogPath}

	// Latency rounds. Each measures from the change to the rules written to
	// the API server and to istiod's next push of DestinationRule config
	// after the last write.
	var one, off, all, direct, baseline, mcpOne, mcpAll pushTimes
	one.ack, off.ack, all.ack, direct.ack, baseline.ack = acks["api"], acks["api"], acks["api"], acks["api"], acks["api-hand"]
	mcpOne.ack, mcpAll.ack = acks["mcp"], acks["mcp"]
	one.service, one.httpAddr = "svc-0000.default", d.HTTPAddr
	one.check = func() (string, error) { return ruleTarget(ctx, drs, "svc-0000.default.svc.cluster.local") }
	baseline.service, baseline.httpAddr = handService+"."+handNamespace, d.HTTPAddr
	handTarget := ""
	baseline.check = func() (string, error) { return handTarget, nil }
	nodes := kubes["c3"].CoreV1().Nodes()
	slices := kubes["c2"].DiscoveryV1().EndpointSlices("default")
	one.name, baseline.name = "one service", "hand-written rule"
	var prof *istiodCPU
	if *cpuProf != "" {
		prof = startIstiodCPU(d.HTTPAddr)
	}
	for i := range *rounds {
		// One service: svc-0000's endpoint in r2 goes not ready (r1's
		// failover target moves from r2 to r3), then ready again.
		es, err := slices.Get(ctx, "svc-0000-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := i%2 == 1
		es.Endpoints[0].Conditions.Ready = &ready
		one.firstWrite, one.rule = true, locality.RuleName("default", "svc-0000")
		if mode == "grouped" {
			// The namespace rule changes, and the exception of svc-0000 may
			// too: istiod's line names one of them.
			all.rule, direct.rule = anyRule, anyRule
		}
		if err := prepareMCP(mcpd); err != nil {
			return err
		}
		var t0 time.Time
		if err := one.measure(written, ilog, func() error {
			t0 = time.Now()
			_, err := slices.Update(ctx, es, metav1.UpdateOptions{})
			return err
		}); err != nil {
			one.fail(fmt.Errorf("one service's endpoints: %w", err))
		}
		mcpOne.measureMCP(mcpd, t0)
		// A user turns svc-0001 off (meshfleet.io/locality), then on again:
		// its shield is created, then deleted (grouped), or its own rule
		// deleted, then created.
		off.rule = locality.RuleName("default", "svc-0001")
		if err := off.measure(written, ilog, func() error {
			return setOff(ctx, kubes["c1"], "svc-0001", i%2 == 0)
		}); err != nil {
			off.fail(fmt.Errorf("turning svc-0001 off or on: %w", err))
		}
		// Every service: relabel the r3 node of c3 between r3 and r4.
		region := "r4"
		if i%2 == 1 {
			region = "r3"
		}
		n, err := nodes.Get(ctx, "n-r3-z4", metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels[topology.LabelRegion] = region
		if err := prepareMCP(mcpd); err != nil {
			return err
		}
		if err := all.measure(written, ilog, func() error {
			c3Region.Store(region)
			t0 = time.Now()
			_, err := nodes.Update(ctx, n, metav1.UpdateOptions{})
			return err
		}); err != nil {
			all.fail(fmt.Errorf("relabelling node n-r3-z4 to %s: %w", region, err))
		}
		mcpAll.measureMCP(mcpd, t0)
		// Baseline: every rule changed by the policy, synced directly (no
		// watch, no debounce).
		// (Flipped inside the change: after measure forgot earlier writes,
		// so a sync of the server's own that picks the flip up counts.)
		if err := direct.measure(written, ilog, func() error {
			policyFlip.Store(true)
			return srv.Sync(ctx, time.Now())
		}); err != nil {
			direct.fail(fmt.Errorf("direct policy change: %w", err))
		}
		// Flipped back, unmeasured, so that every round starts from the
		// same policy (with r1's target elsewhere than r2, svc-0000's r2
		// endpoint would change nothing).
		restore := pushTimes{rule: direct.rule, ack: direct.ack}
		if err := restore.measure(written, ilog, func() error {
			policyFlip.Store(false)
			return srv.Sync(ctx, time.Now())
		}); err != nil {
			fmt.Fprintln(os.Stderr, "note: restoring the policy:", err)
		}
		// Baseline: one hand-written DestinationRule updated, as kubectl would.
		baseline.rule = "bench-hand-written"
		if err := baseline.measure(nil, ilog, func() error {
			// The same change as the one Service's: r1's failover target
			// moves between r2 and r3.
			to := "r3"
			if i%2 == 1 {
				to = "r2"
			}
			handTarget = to
			next := handRule(to)
			next.SetResourceVersion(hand.GetResourceVersion())
			hand, err = drs.Update(ctx, next, metav1.UpdateOptions{})
			return err
		}); err != nil {
			baseline.fail(fmt.Errorf("hand-written rule: %w", err))
		}
	}
	profPath := ""
	if prof != nil {
		profPath = nextProfilePath()
		if err := prof.write(profPath); err != nil {
			fmt.Fprintln(os.Stderr, err)
			profPath = ""
		}
	}
	rss, heap := memAfterGC()
	hwm := procStatus("VmHWM")
	st := srv.State()

	var fo *failoverResult
	if withFailover && *failover > 0 {
		stopFeed()
		if fo, err = failoverBench(ctx, kubes["c1"], cfgs["c1"], d, srv.Server); err != nil {
			fmt.Fprintln(os.Stderr, "failover part failed:", err)
		}
	}

	setting := "real istiod"
	if istiodSetting != "" {
		setting = istiodSetting
	}
	fmt.Printf("\nlocality server, %d services × %d clusters, %s rules (%d DestinationRules written into c1), %s reading them from the API server\n", *services, len(clusterNodes), mode, st.Rules, setting)
	if profPath != "" {
		fmt.Printf("istiod's CPU profile over the rounds: %s\n", profPath)
	}
	fmt.Printf("load average (1, 5, 15 min) at the start of this size: %s; now: %s\n\n", loadAtStart, loadAverage())
	fmt.Printf("every rule written, from the server's start (informers of 3 clusters syncing): %v\n\n", firstWrite.Round(time.Millisecond))
	row := func(name string, ds []time.Duration) {
		fmt.Printf("%-66s %9s %9s %9s\n", name, pct(ds, 50), pct(ds, 99), pct(ds, 100))
	}
	const ackedRow = "  ACKed by a grpc-go xDS client (every response of that push)"
	// ackRows prints istiod's stages of the push to the client (from its
	// log), then the client's ACK.
	ackRows := func(t *pushTimes) {
		row("    istiod's push context built (its \"XDS: Pushing\" line)", t.built)
		row("    its first response to the client sent (proxy state, CDS)", t.firstSent)
		row("    its last response to the client sent", t.lastSent)
		row(ackedRow, t.acked)
	}
	if n := one.failed + off.failed + all.failed + direct.failed + baseline.failed + mcpOne.failed + mcpAll.failed; n > 0 {
		fmt.Printf("rounds that did not complete (see stderr): %d\n", n)
	}
	fmt.Printf("%-66s %9s %9s %9s\n", "latency per round, from the change to", "p50", "p99", "max")
	fmt.Println("one service's endpoints not ready / ready (1 rule changes):")
	row("  rule written to the API server", one.written)
	row("  received by istiod (its config handler; start of its debounce)", one.received)
	row("  istiod pushes it (its \"Push debounce stable\" log line)", one.pushed)
	ackRows(&one)
	reflectedRow(&one)
	fmt.Printf("a Service turned off / on (meshfleet.io/locality; its %s created / deleted):\n", map[bool]string{true: "shield", false: "rule"}[mode == "grouped"])
	row("  rule written to the API server (the last write before a quiet second)", off.written)
	row("  received by istiod", off.received)
	row("  istiod pushes it", off.pushed)
	ackRows(&off)
	fmt.Printf("node region relabelled (every service's rule changes):\n")
	row("  rules written to the API server", all.written)
	row("  received by istiod", all.received)
	row("  istiod pushes them", all.pushed)
	ackRows(&all)
	if mcpd != nil {
		fmt.Println("same changes, same run, a second istiod reading the rules over MCP (configSources xds://, no API write):")
		mcpRows := func(t *pushTimes, served, pushes string) {
			row(served, t.written)
			row("  received by the MCP istiod", t.received)
			row(pushes, t.pushed)
			ackRows(t)
			row("  of which the feed's watch event → rules computed (not MCP's share)", t.compute)
			row("  of which MCP's own hop: served → received by istiod", t.hop)
		}
		fmt.Println("one service's endpoints not ready / ready:")
		mcpRows(&mcpOne, "  rules served over MCP (translated from the same watch)", "  the MCP istiod pushes it")
		fmt.Println("node region relabelled:")
		mcpRows(&mcpAll, "  rules served over MCP", "  the MCP istiod pushes them")
	}
	fmt.Println("baseline: policy changed, synced directly (translate + write only):")
	row("  rules written to the API server", direct.written)
	row("  received by istiod", direct.received)
	row("  istiod pushes them", direct.pushed)
	ackRows(&direct)
	fmt.Println("baseline: a hand-written DestinationRule of the same shape updated (r1's failover target moved; istiod's own path):")
	row("  received by istiod", baseline.received)
	row("  istiod pushes it", baseline.pushed)
	ackRows(&baseline)
	reflectedRow(&baseline)
	fmt.Println("(received: when istiod's config handler got the first event of the push's debounce window, i.e. its informer delivered the")
	fmt.Println(" change: the push time less the window istiod logs. From there to the push is istiod's own debounce, PILOT_DEBOUNCE_AFTER,")
	fmt.Println(" 100 ms quiet by default, the same for every row.")
	fmt.Println(" ACKed: when istiod received the ACK of a real grpc-go proxyless client in r1/z1, subscribed to the changed Service")
	fmt.Println(" (svc-0000; the baseline's: its own Service), of the last of the responses (LDS/RDS/CDS/EDS, matched by nonce) that istiod")
	fmt.Println(" sent it in that push, whose EDS priorities carry the changed failover; read from istiod's ads debug log. grpc-go ACKs a")
	fmt.Println(" response once it has parsed and validated it and handed it to its watchers.)")
	fmt.Printf("\nserver alone after its first write of every rule (+ bench clients; before the MCP feed starts): heap in use after GC %.1f MiB, resident (VmRSS, after GC and returning freed memory) %s\n", serverHeap, serverRSS)
	what := "server + informers of 3 clusters + bench clients"
	if mcpd != nil {
		what += " + the MCP feed's watcher of the same clusters and its translation"
	}
	fmt.Printf("after the rounds (%s): heap in use after GC %.1f MiB, VmRSS %s, peak so far (VmHWM, includes creating the services) %s\n", what, heap, rss, hwm)
	if fo != nil {
		fmt.Printf("\n%-66s %9s %9s %9s\n", "failover time (not ready → ≥99/100 RPCs in the next locality)", "p50", "p99", "max")
		for _, step := range failoverSteps {
			row(step.key+": meshfleet's generated DestinationRule", fo.times[step.key+"/meshfleet"])
			row(step.key+": the same, no hold-down (-hold-down=0 rounds, interleaved)", fo.times[step.key+"/meshfleet-nohold"])
			row(step.key+": baseline, same rule written by hand", fo.times[step.key+"/user"])
		}
		fmt.Printf("(meshfleet's rounds alternate between hold-down %v and none; load average at the failover part's start: %s)\n", *holdDown, fo.load)
		fmt.Printf("\nistiod's pushes in the %v after a region failover (its %q lines)\n", foPushWindow, pushedLine)
		for _, k := range []string{"meshfleet", "meshfleet-nohold", "user"} {
			p := fo.pushes["region/"+k]
			if p == nil {
				continue
			}
			fmt.Printf("  %-18s first push p50 %s after the change, merged with another config in %d of %d rounds; pushes per round %v\n",
				k+":", pct(p.first, 50), p.merged, len(p.first), p.counts)
			if p.example != "" {
				fmt.Printf("    e.g. %s\n", p.example)
			}
		}
	}
	return err
}

// checkReflected compares r1's failover target in the rule with the region
// tried first in the client's endpoints.
func (p *pushTimes) checkReflected() error {
	want, err := p.check()
	if err != nil {
		return err
	}
	got, err := p.ack.firstRegion(p.httpAddr, p.service, "r2", "r3")
	if err != nil {
		return err
	}
	p.checked++
	if got == want {
		p.reflected++
		return nil
	}
	return fmt.Errorf("client %s: the rule fails r1 over to %s, its endpoints try %s first", p.ack.proxy, want, got)
}

// handRule is the hand-written baseline rule for handService: what
// meshfleet generates for one Service (failover of r1 to the region to,
// its outlier detection defaults).
func handRule(to string) *unstructured.Unstructured {
	od := locality.DefaultOutlierDetection()
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"metadata": map[string]any{"name": "bench-hand-written", "namespace": "istio-system"},
		"spec": map[string]any{
			"host": handService + "." + handNamespace + ".svc.cluster.local",
			"trafficPolicy": map[string]any{
				"loadBalancer": map[string]any{"localityLbSetting": map[string]any{"enabled": true,
					"failover": []any{map[string]any{"from": "r1", "to": to}}}},
				"outlierDetection": map[string]any{
					"consecutive5xxErrors": int64(od.Consecutive5xxErrors), "interval": od.Interval.Duration.String(),
					"baseEjectionTime": od.BaseEjectionTime.Duration.String(), "maxEjectionPercent": int64(od.MaxEjectionPercent),
				},
			},
		},
	}}
}

// reflectedRow prints how many ACKed pushes were checked to carry the
// rule's failover target.
func reflectedRow(p *pushTimes) {
	fmt.Printf("    (ACKed endpoints checked to try the rule's failover target of r1 first, istiod's config_dump of the client: %d of %d rounds)\n", p.reflected, p.checked)
}

// memAfterGC returns the process's resident memory (VmRSS) and heap in use
// (MiB) after a GC that returns freed memory to the system.
func memAfterGC() (string, float64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return procStatus("VmRSS"), float64(ms.HeapInuse) / (1 << 20)
}

// writeHeapProfile writes the heap profile (after the last GC) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadAtStart is the load average when the current size's clusters started.
var loadAtStart string

// loadAverage is the system's load average over 1, 5 and 15 minutes.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// lastWrites is the number of writes of the server's last reported sync.
var lastWrites atomic.Int64

// waitWritten returns the time of the next write the server reports.
func waitWritten(written chan time.Time, timeout time.Duration) (time.Time, error) {
	select {
	case at := <-written:
		return at, nil
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("no rule written within %v", timeout)
	}
}

// pushTimes are one figure's rounds: the time from a change to the rules
// written to the API server, and to istiod pushing them. With firstWrite
// the push is the first after the change's first write (one rule: one
// write), else after its last (every rule: writes may span syncs).
type pushTimes struct {
	written, pushed []time.Duration
	// received is when istiod's config handler got the first event of the
	// push's debounce window (the push time less the window's length,
	// which istiod logs as "… since last push").
	received []time.Duration
	// acked is when istiod received the ACK of the xDS client ack of every
	// response it sent the client in that push (ackedAfter).
	acked []time.Duration
	ack   *ackClient
	// From istiod's log of the same push to the client (pushTrace):
	// its push context built, its first and its last response sent.
	built, firstSent, lastSent []time.Duration
	// name, if set, prints each round's trace to stderr under it.
	name string
	// check, if set, returns r1's failover target in the rule istiod
	// applies to the client's Service (service, istiod's debug address
	// httpAddr): each ACKed push is checked to show it first among r2 and
	// r3 in the client's endpoints (reflected of checked rounds).
	check              func() (string, error)
	service, httpAddr  string
	checked, reflected int
	firstWrite         bool
	failed             int
	// MCP only: the feed's own computation (its watcher's event → rules
	// handed to the MCP server), and the MCP hop (served → received).
	compute, hop []time.Duration
	// rule, if set, is the rule whose push counts: istiod's first push
	// naming it after the change (istiod may push a created rule before
	// the server has finished the request that follows the create).
	rule string
}

// anyRule as pushTimes.rule counts istiod's first DestinationRule push
// after the change (rounds are apart: the previous round's pushes are over).
const anyRule = "*"

// fail records a round that did not complete.
func (p *pushTimes) fail(err error) {
	p.failed++
	fmt.Fprintln(os.Stderr, "round failed:", err)
}

// measure makes one change and records when the server had written its
// rules (written nil: nothing to wait for) and when istiod next pushed
// DestinationRule config after that.
func (p *pushTimes) measure(written chan time.Time, ilog *istiodLog, change func() error) error {
	if written != nil {
		for len(written) > 0 {
			<-written
		}
	}
	if err := ilog.skip(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := change(); err != nil {
		return err
	}
	first, last := t0, t0
	if written != nil {
		at, err := waitWritten(written, changeTimeout())
		if err != nil {
			return err
		}
		// Writes of one change may span several syncs (a burst, then the
		// debounce's coalesced rest): take the last before a quiet second.
		firstAt, firstN, syncs := at, lastWrites.Load(), 1
		first = firstAt
		for quiet := false; !quiet; {
			select {
			case at = <-written:
				syncs++
			case <-time.After(time.Second):
				quiet = true
			}
		}
		last = at
		if syncs > 1 {
			fmt.Fprintf(os.Stderr, "note: one change written in %d syncs (the first of %d writes %v after the change, the last of %d writes %v after it)\n",
				syncs, firstN, firstAt.Sub(t0), lastWrites.Load(), at.Sub(t0))
		}
		if p.firstWrite {
			last = firstAt
		}
		p.written = append(p.written, last.Sub(t0))
	}
	if p.rule != "" {
		config := "DestinationRule/istio-system/" + p.rule
		if p.rule == anyRule {
			config = "DestinationRule"
		}
		pushed, window, err := ilog.pushedFor(t0, config, changeTimeout())
		if err != nil {
			return err
		}
		return p.record(ilog, t0, pushed, window)
	}
	timeout := changeTimeout()
	if first != last {
		timeout = 15 * time.Second
	}
	pushed, window, err := ilog.pushedAfter(last, timeout)
	if err != nil && first != last {
		// A later sync's writes changed nothing istiod pushes for: take the
		// push after the change's first write.
		fmt.Fprintf(os.Stderr, "note: no push after the last sync's writes; measured from the first: %v\n", err)
		pushed, window, err = ilog.pushedAfter(first, time.Second)
	}
	if err != nil {
		return err
	}
	return p.record(ilog, t0, pushed, window)
}

// record adds a round whose change at t0 istiod pushed at pushed after a
// debounce window of window, and waits for the xDS client's ACK of the push.
func (p *pushTimes) record(ilog *istiodLog, t0, pushed time.Time, window time.Duration) error {
	p.pushed = append(p.pushed, pushed.Sub(t0))
	p.received = append(p.received, pushed.Add(-window).Sub(t0))
	if p.ack != nil {
		tr, err := ilog.ackedAfter(pushed, p.ack, changeTimeout())
		if err != nil {
			return err
		}
		p.acked = append(p.acked, tr.acked.Sub(t0))
		p.trace(t0, pushed, tr)
		if p.check != nil {
			if err := p.checkReflected(); err != nil {
				fmt.Fprintln(os.Stderr, "note: checking the ACKed endpoints:", err)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	return nil
}

// trace records the stages of istiod's push (pushed at pushed) of a change
// made at t0 to the client, from istiod's log, and with p.name prints them
// to stderr: push context built, each response sent, ACKed (from the push).
func (p *pushTimes) trace(t0, pushed time.Time, tr pushTrace) {
	if tr.pushing.IsZero() || len(tr.sent) == 0 {
		return
	}
	p.built = append(p.built, tr.pushing.Sub(t0))
	p.firstSent = append(p.firstSent, tr.sent[0].at.Sub(t0))
	p.lastSent = append(p.lastSent, tr.sent[len(tr.sent)-1].at.Sub(t0))
	if p.name == "" {
		return
	}
	ms := func(t time.Time) string { return fmt.Sprint(t.Sub(pushed).Round(time.Millisecond)) }
	var b strings.Builder
	fmt.Fprintf(&b, "push trace, %s (from istiod's push line): push context built %s", p.name, ms(tr.pushing))
	for _, r := range tr.sent {
		fmt.Fprintf(&b, ", %s sent %s", r.typ, ms(r.at))
	}
	fmt.Fprintf(&b, ", ACKed %s\n", ms(tr.acked))
	fmt.Fprint(os.Stderr, b.String())
}

// istiodLog reads, from istiod's log, when it pushed DestinationRule
// config: istiod logs "Push debounce stable … for config DestinationRule/…"
// (microsecond timestamps) when a debounced config change starts a push.
type istiodLog struct {
	path   string
	offset int64
}

const pushedLine = "Push debounce stable"

// skip moves past what the log holds now.
func (l *istiodLog) skip() error {
	fi, err := os.Stat(l.path)
	if err != nil {
		return err
	}
	l.offset = fi.Size()
	return nil
}

// pushedAfter waits for the first DestinationRule push logged since skip
// at or after t, and returns its time and its debounce window.
func (l *istiodLog) pushedAfter(t time.Time, timeout time.Duration) (time.Time, time.Duration, error) {
	return l.pushedFor(t, "DestinationRule", timeout)
}

// pushedFor waits for the first push logged since skip at or after t whose
// line names config (e.g. "DestinationRule/istio-system/<name>"), and
// returns its time and its debounce window: istiod logs "Push debounce
// stable[n] k for config …: Q since last change, W since last push", where
// W is the time since the first event of the window reached its config
// handler (its debounce start), so the push time less W is when istiod
// received the change.
func (l *istiodLog) pushedFor(t time.Time, config string, timeout time.Duration) (time.Time, time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		at, window, err := l.scan(t, config)
		if err != nil || !at.IsZero() {
			return at, window, err
		}
		if time.Now().After(deadline) {
			return time.Time{}, 0, fmt.Errorf("istiod log %s: no %q line for a DestinationRule after %v within %v", l.path, pushedLine, t.Format(time.RFC3339Nano), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// windowOf parses the debounce window ("W since last push") of a push line.
func windowOf(line string) (time.Duration, error) {
	before, _, ok := strings.Cut(line, " since last push")
	if !ok {
		return 0, fmt.Errorf("no debounce window in %q", line)
	}
	return time.ParseDuration(before[strings.LastIndexByte(before, ' ')+1:])
}

func (l *istiodLog) scan(after time.Time, config string) (time.Time, time.Duration, error) {
	pushes, _, err := l.pushesFrom(l.offset)
	if err != nil {
		return time.Time{}, 0, err
	}
	for _, p := range pushes {
		if !strings.Contains(p.line, config) {
			continue
		}
		if p.err != nil {
			return time.Time{}, 0, fmt.Errorf("istiod log %s: timestamp of %q: %w", l.path, p.line, p.err)
		}
		if !p.at.Before(after) {
			window, err := windowOf(p.line)
			if err != nil {
				return time.Time{}, 0, fmt.Errorf("istiod log %s: %w", l.path, err)
			}
			return p.at, window, nil
		}
	}
	return time.Time{}, 0, nil
}

// pushLine is one of istiod's push lines ("Push debounce stable") and its
// time (err: its timestamp did not parse).
type pushLine struct {
	line string
	at   time.Time
	err  error
}

// pushesFrom returns the push lines the log holds from byte offset off on,
// and the offset after its last whole line, where a next call goes on (a
// line istiod is still writing is read then).
func (l *istiodLog) pushesFrom(off int64) ([]pushLine, int64, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, err
	}
	var out []pushLine
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			return out, off, nil
		}
		if err != nil {
			return out, off, err
		}
		off += int64(len(line))
		if !strings.Contains(line, pushedLine) {
			continue
		}
		line = strings.TrimSuffix(line, "\n")
		ts, _, _ := strings.Cut(line, "\t")
		at, err := time.Parse(time.RFC3339Nano, ts)
		out = append(out, pushLine{line: line, at: at, err: err})
	}
}

// standbyNodes are nodes of c1 in r2 and r3 on which the two Services the
// xDS clients hold (svc-0000 and handService) also have an endpoint that is
// never ready. istiod, which here watches c1 only, sends them (as
// UNHEALTHY) in their localities, so the priorities of r2 and r3 in the
// clients' endpoints follow r1's failover target; meshfleet counts only
// ready endpoints, so its rules do not change.
var standbyNodes = [][3]string{{"n-r2-z3-c1", "r2", "z3"}, {"n-r3-z4-c1", "r3", "z4"}}

// populate creates the nodes, and n services each with one ready endpoint
// per node of the cluster.
func populate(ctx context.Context, kube kubernetes.Interface, cluster string, nodes [][3]string, n int) error {
	var standby [][3]string
	if cluster == "c1" {
		standby = standbyNodes
	}
	for _, nd := range append(append([][3]string{}, nodes...), standby...) {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nd[0], Labels: map[string]string{topology.LabelRegion: nd[1], topology.LabelZone: nd[2]}}}
		if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("cluster %s: creating node %s: %w", cluster, nd[0], err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var sb [][3]string
			if i == 0 {
				sb = standby
			}
			if err := createService(ctx, kube, "default", fmt.Sprintf("svc-%04d", i), fmt.Sprintf("198.19.%d.", i/250), i%250, nodes, sb, "198.19.251.", nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	// The baseline's Service: the same shape, its rule written by hand.
	if err := createBenchNamespace(ctx, kube, cluster, handNamespace); err != nil {
		errs <- err
	} else if err := createService(ctx, kube, handNamespace, handService, "198.19.250.", 0, nodes, standby, "198.19.252.", map[string]string{locality.AnnotationLocality: "off"}); err != nil {
		errs <- err
	}
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("cluster %s: %w", cluster, err)
	}
	return nil
}

// handService is the Service of the hand-written baseline rule: shaped as
// the measured ones, meshfleet turned off for it.
const handService = "hand"

// handNamespace holds handService alone, so that its hand-written rule and
// "off" change nothing in the bench's namespace (before decision 77 they
// kept it from being grouped).
const handNamespace = "bench-hand"

// setOff sets or removes meshfleet.io/locality: off on Service
// default/name of c1, the config cluster (whose copy istiod uses).
func setOff(ctx context.Context, kube kubernetes.Interface, name string, on bool) error {
	patch := `{"metadata":{"annotations":{"` + locality.AnnotationLocality + `":null}}}`
	if on {
		patch = `{"metadata":{"annotations":{"` + locality.AnnotationLocality + `":"off"}}}`
	}
	_, err := kube.CoreV1().Services("default").Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// createBenchNamespace creates namespace ns (and, in c1, where its Pods
// run, its default ServiceAccount: no kube-controller-manager runs).
func createBenchNamespace(ctx context.Context, kube kubernetes.Interface, cluster, ns string) error {
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("cluster %s: %w", cluster, err)
	}
	if cluster != "c1" {
		return nil
	}
	_, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	return err
}

// createService creates a headless Service with one ready endpoint per
// node, at prefix + (first + the node's index). With standby nodes it also
// has one endpoint that is never ready per standby node, at standbyPrefix +
// (1 + its index), and every endpoint is a Pod on its node: istiod takes an
// endpoint's locality from its Pod's node.
func createService(ctx context.Context, kube kubernetes.Interface, ns, name, prefix string, first int, nodes, standby [][3]string, standbyPrefix string, annotations map[string]string) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "grpc", Port: foPort}}}}
	if _, err := kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		// istiod matches the Service's port by name.
		Ports: []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(foPort)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	add := func(addr, node string, ready bool) error {
		// Not ready, not serving, not terminating: istiod sends it as
		// UNHEALTHY (an endpoint without terminating: false it drops).
		conds := discoveryv1.EndpointConditions{Ready: ptr(ready)}
		if !ready {
			conds.Serving, conds.Terminating = ptr(false), ptr(false)
		}
		ep := discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr(node), Conditions: conds}
		if standby != nil {
			// The Pod is ready even where its endpoint is not: istiod
			// indexes only ready Pods, and takes the endpoint's health
			// from the EndpointSlice.
			pod, err := createPod(ctx, kube, ns, fmt.Sprintf("%s-%d", name, len(es.Endpoints)), node, addr)
			if err != nil {
				return err
			}
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod}
		}
		es.Endpoints = append(es.Endpoints, ep)
		return nil
	}
	for j, nd := range nodes {
		if err := add(prefix+strconv.Itoa(first+j), nd[0], true); err != nil {
			return err
		}
	}
	for j, nd := range standby {
		if err := add(standbyPrefix+strconv.Itoa(j+1), nd[0], false); err != nil {
			return err
		}
	}
	_, err := kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{})
	return err
}

// createPod creates a running, ready Pod on node with the address addr and
// returns its name.
func createPod(ctx context.Context, kube kubernetes.Interface, ns, name, node, addr string) (string, error) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "echo", Image: "echo"}}}}
	created, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating pod %s: %w", name, err)
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: addr, PodIPs: []corev1.PodIP{{IP: addr}}, HostIP: "127.0.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := kube.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("pod %s status: %w", name, err)
	}
	return name, nil
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

// procStatus returns a field of /proc/self/status ("VmRSS": "123456 kB"),
// or "?" where there is none.
func procStatus(field string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// changeTimeout bounds the wait for one change to be written and pushed:
// a change of every rule is one write per service.
func changeTimeout() time.Duration {
	return 30*time.Second + time.Duration(*services)*20*time.Millisecond
}
