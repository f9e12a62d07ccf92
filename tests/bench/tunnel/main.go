//go:build integration

// Command tunnel measures the cluster tunnel against a real kube-apiserver
// and prints each figure next to a DIRECT connection measured in the same
// run: added latency of a small GET (p50/p99), bulk throughput (a large
// list from the API server, and a raw byte stream from an in-memory
// backend, which shows the transport's own limit), 1,000 concurrent watches
// through one agent, and the time to reconnect after an agent restart.
//
// Its peer is rancher/remotedialer (peer.go), measured in the same run two
// ways: presenting the remote's credentials only, and impersonating the
// caller as meshfleet's agent does and as Rancher does downstream (the
// like-for-like row, "remotedialer, impersonating (as Rancher)", with the
// delta "meshfleet vs remotedialer (impersonating)"). The row "direct,
// impersonating as the agent does" is the API server's own cost of the
// impersonation, which both tunnels pay there.
//
//	go run -tags integration ./tests/bench/tunnel
//	go run -tags integration ./tests/bench/tunnel -only watches -runs 5
//	go run -tags integration ./tests/bench/tunnel -only meshfleet -cpuprofile cpu.out
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

const (
	smallGETs   = 2000
	watches     = 1000
	bulkObjects = 40
	bulkSize    = 500 << 10
	rawBytes    = 64 << 20
	restarts    = 5
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct{ name, direct, tunnel, peer, note string }

var (
	quick        = flag.Bool("quick", false, "measure only the small GETs and the byte stream (for profiling)")
	gets         = flag.Int("gets", smallGETs, "small GETs to time through each path")
	only         = flag.String("only", "", "measure only this: the small GETs through one path (direct, meshfleet, remotedialer or remotedialer-impersonating; for profiling), or watches (direct and meshfleet, -runs times)")
	runs         = flag.Int("runs", 1, "with -only watches: how many times to measure the watches through each path")
	cpuProfile   = flag.String("cpuprofile", "", "write a CPU profile of the tunnel measurements to this file")
	blockProfile = flag.String("blockprofile", "", "write a profile of where goroutines blocked (hand-offs) during the tunnel measurements to this file")
)

// A target is one way to reach a backend: its caller configuration.
type target struct{ direct, tunnel, peer *rest.Config }

func run() error {
	flag.Parse()
	ctx := context.Background()
	env, stop, err := testenv.StartShared(ctx, "", localcluster.ClusterOptions{
		Name: "remote", ExtraAPIServerArgs: []string{"--max-requests-inflight=3000"},
	})
	if err != nil {
		return err
	}
	defer stop()
	c := env.Cluster("remote")

	b, err := newBench(ctx, c)
	if err != nil {
		return err
	}
	defer b.close()
	peer, err := newPeer(ctx)
	if err != nil {
		return err
	}
	defer peer.close()
	apiPeer, err := peer.front("remote", c.Config)
	if err != nil {
		return err
	}
	rawPeer, err := peer.front("raw", b.rawConfig)
	if err != nil {
		return err
	}
	// The like-for-like peer: a front whose credentials impersonate the
	// caller as meshfleet's agent does, as Rancher's does (peer.go).
	imp, err := b.impersonating(c.Config)
	if err != nil {
		return err
	}
	apiPeerImp, err := peer.front("remote-impersonating", imp)
	if err != nil {
		return err
	}
	api := target{direct: h1(c.Config), tunnel: h1(b.callerConfig("remote")), peer: apiPeer}
	raw := target{direct: h1(b.rawConfig), tunnel: h1(b.callerConfig("raw")), peer: rawPeer}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *blockProfile != "" {
		runtime.SetBlockProfileRate(1)
		defer func() {
			if f, err := os.Create(*blockProfile); err == nil {
				_ = pprof.Lookup("block").WriteTo(f, 0)
				f.Close()
			}
		}()
	}

	var rows []row
	if *only == "watches" {
		return b.watchRuns(ctx, c.Config, b.callerConfig("remote"))
	}
	if *only != "" {
		cfg := map[string]*rest.Config{"direct": api.direct, "meshfleet": api.tunnel, "remotedialer": api.peer, "remotedialer-impersonating": apiPeerImp}[*only]
		if cfg == nil {
			return fmt.Errorf("-only %q: want direct, meshfleet, remotedialer, remotedialer-impersonating or watches", *only)
		}
		lat, err := b.latency(cfg)
		if err != nil {
			return err
		}
		fmt.Printf("small GET through %s: p50 %s p99 %s, CPU %s\n", *only, ms(lat[0].p50), ms(lat[0].p99), us(lat[0].cpu))
		return nil
	}
	lat, err := b.latency(api.direct, api.tunnel, api.peer, imp, apiPeerImp)
	if err != nil {
		return err
	}
	rows = append(rows,
		row{"small GET p50", ms(lat[0].p50), ms(lat[1].p50), ms(lat[2].p50), "added " + ms(lat[1].p50-lat[0].p50) + " (peer " + ms(lat[2].p50-lat[0].p50) + ")"},
		row{"  direct, impersonating as the agent does", ms(lat[3].p50), "-", "-", "the API server's own cost of impersonation: " + ms(lat[3].p50-lat[0].p50)},
		row{"  remotedialer, impersonating (as Rancher)", "-", "-", ms(lat[4].p50), "meshfleet vs remotedialer (impersonating): " + signedMs(lat[1].p50-lat[4].p50) +
			"; added over direct impersonating: meshfleet " + ms(lat[1].p50-lat[3].p50) + ", peer " + ms(lat[4].p50-lat[3].p50)},
		row{"small GET p99", ms(lat[0].p99), ms(lat[1].p99), ms(lat[2].p99), "added " + ms(lat[1].p99-lat[0].p99)},
		row{"  remotedialer, impersonating (as Rancher)", "-", "-", ms(lat[4].p99), "meshfleet vs remotedialer (impersonating): " + signedMs(lat[1].p99-lat[4].p99)},
		row{"CPU per small GET (this process)", us(lat[0].cpu), us(lat[1].cpu), us(lat[2].cpu), "caller + server + agent (peer impersonating: " + us(lat[4].cpu) + ")"})

	var tp [3]throughput
	for i, cfg := range []*rest.Config{raw.direct, raw.tunnel, raw.peer} {
		if tp[i], err = b.throughput(cfg, "/bytes", 3); err != nil {
			return err
		}
	}
	rows = append(rows,
		row{fmt.Sprintf("bulk byte stream MB/s (%d MiB)", rawBytes>>20), mbps(tp[0].rate), mbps(tp[1].rate), mbps(tp[2].rate), pct(tp[1].rate, tp[0].rate) + " of direct"},
		row{"CPU s per GB (this process)", secs(tp[0].cpuPerGB), secs(tp[1].cpuPerGB), secs(tp[2].cpuPerGB), "caller + server + agent + backend"})

	if !*quick {
		if err := b.createBulk(ctx); err != nil {
			return err
		}
		for i, cfg := range []*rest.Config{api.direct, api.tunnel, api.peer} {
			if tp[i], err = b.throughput(cfg, "/api/v1/namespaces/bulk/configmaps", 3); err != nil {
				return err
			}
		}
		rows = append(rows, row{"bulk list (API server) MB/s", mbps(tp[0].rate), mbps(tp[1].rate), mbps(tp[2].rate), pct(tp[1].rate, tp[0].rate) + " of direct"})

		dw, err := b.watches(ctx, c.Config)
		if err != nil {
			return err
		}
		tw, err := b.watches(ctx, b.callerConfig("remote"))
		if err != nil {
			return err
		}
		rows = append(rows, row{fmt.Sprintf("%d watches: open all", watches), ms(dw.open), ms(tw.open), "-", "one agent"},
			row{fmt.Sprintf("%d watches: event to half", watches), ms(dw.half), ms(tw.half), "-", "one agent"},
			row{fmt.Sprintf("%d watches: event to all", watches), ms(dw.all), ms(tw.all), "-", "one agent"})

		rc, err := b.reconnect(ctx)
		if err != nil {
			return err
		}
		rows = append(rows, row{"reconnect after agent restart (median)", "-", ms(rc), "-", fmt.Sprintf("%d restarts, new agent → first GET OK", restarts)})
	}

	fmt.Printf("\n%-40s %12s %12s %13s   %s\n", "measurement", "direct", "meshfleet", "remotedialer", "")
	fmt.Println(strings.Repeat("-", 110))
	for _, r := range rows {
		fmt.Printf("%-40s %12s %12s %13s   %s\n", r.name, r.direct, r.tunnel, r.peer, r.note)
	}
	return nil
}

// h1 returns a copy of cfg whose caller speaks HTTP/1.1 with keep-alive,
// as kubectl and client-go do against the tunnel.
func h1(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// bench is a tunnel server with one agent for the API server ("remote") and
// one for an in-memory byte source ("raw").
type bench struct {
	root      *ca.KeyPair
	roots     *x509.CertPool
	admin     *rest.Config
	server    *tunnel.Server
	apiURL    string
	agentURL  string
	rawConfig *rest.Config
	agentCert map[string]tls.Certificate
	stops     []func()
	agent     context.CancelFunc
}

func newBench(ctx context.Context, c *localcluster.Cluster) (*bench, error) {
	now := time.Now()
	root, err := ca.NewRoot(ca.RootOptions{TTL: time.Hour, Now: now})
	if err != nil {
		return nil, err
	}
	b := &bench{root: root, roots: x509.NewCertPool(), admin: c.Config, agentCert: map[string]tls.Certificate{}}
	b.roots.AddCert(root.Cert)
	sc, err := tunnel.IssueServerCertificate(root, []string{"127.0.0.1"}, tunnel.CertificateOptions{TTL: time.Hour, Now: now})
	if err != nil {
		return nil, err
	}
	serving, err := sc.TLSCertificate()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"remote", "raw"} {
		ac, err := tunnel.IssueAgentCertificate(root, name, tunnel.CertificateOptions{TTL: time.Hour, Now: now})
		if err != nil {
			return nil, err
		}
		if b.agentCert[name], err = ac.TLSCertificate(); err != nil {
			return nil, err
		}
	}
	clientCAs, err := tunnel.CABundleFromPEM(c.CACertPEM)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The bench's caller is the cluster's admin: allowed by the access
	// policy and bound to cluster-admin under its mapped name.
	access := tunnel.DefaultAccessPolicy(tunnel.DefaultIstioNamespace, tunnel.DefaultMeshfleetNamespace)
	access.Allow = append(access.Allow, tunnel.AccessRule{User: "admin"})
	if _, err := kubernetes.NewForConfigOrDie(c.Config).RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tunnel-bench-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: mapping.User(access.Prefix, "admin")}},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	b.server, err = tunnel.NewServer(tunnel.ServerOptions{ServingCertificate: tunnel.StaticKeyPair(serving), AgentCAs: tunnel.StaticCABundle(root.Cert), ClientCAs: clientCAs,
		Access: &access, Clusters: tunnel.NewClusterSet("remote", "raw"), Logger: quiet})
	if err != nil {
		return nil, err
	}
	apiLn, _ := net.Listen("tcp", "127.0.0.1:0")
	agentLn, _ := net.Listen("tcp", "127.0.0.1:0")
	b.apiURL, b.agentURL = "https://"+apiLn.Addr().String(), "https://"+agentLn.Addr().String()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = b.server.Serve(sctx, apiLn, agentLn); close(done) }()
	b.stops = append(b.stops, func() { cancel(); <-done })

	raw := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		buf := make([]byte, 1<<20)
		w.Header().Set("Content-Type", "application/octet-stream")
		for sent := 0; sent < rawBytes; sent += len(buf) {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	raw.EnableHTTP2 = true
	raw.StartTLS()
	b.stops = append(b.stops, raw.Close)
	b.rawConfig = &rest.Config{Host: raw.URL, BearerToken: "raw", TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw.Certificate().Raw})}}

	if err := b.startAgent(ctx, "raw", b.rawConfig); err != nil {
		return nil, err
	}
	b.stops = append(b.stops, b.agent)
	return b, b.startAgent(ctx, "remote", c.Config)
}

// startAgent starts an agent for cluster and waits until it is connected and
// a request through it succeeds.
func (b *bench) startAgent(ctx context.Context, cluster string, upstream *rest.Config) error {
	a, err := tunnel.NewAgent(tunnel.AgentOptions{
		Cluster: cluster, Servers: []string{b.agentURL}, Certificate: tunnel.StaticKeyPair(b.agentCert[cluster]),
		ServerCAs: tunnel.StaticCABundle(b.root.Cert), Upstream: upstream, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = a.Run(actx); close(done) }()
	b.agent = func() { cancel(); <-done }
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, info := range b.server.Agents(cluster) {
			if info.ID == a.ID() {
				return nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("agent for %s did not connect", cluster)
}

func (b *bench) close() {
	if b.agent != nil {
		b.agent()
	}
	for i := len(b.stops) - 1; i >= 0; i-- {
		b.stops[i]()
	}
}

func (b *bench) callerConfig(cluster string) *rest.Config {
	return &rest.Config{
		Host: b.apiURL + tunnel.ClustersPathPrefix + cluster,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: b.root.CertPEM, CertData: b.admin.CertData, KeyData: b.admin.KeyData,
		},
	}
}

type latency struct {
	p50, p99, cpu time.Duration
}

// latency returns p50 and p99 of sequential small GETs through each of
// cfgs and the CPU time this process spent per GET. The GETs take turns
// (one through each, then again), so that load from elsewhere on the
// machine falls on all alike.
func (b *bench) latency(cfgs ...*rest.Config) ([]latency, error) {
	hcs := make([]*http.Client, len(cfgs))
	for i, cfg := range cfgs {
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			return nil, err
		}
		hcs[i] = hc
	}
	ds := make([][]time.Duration, len(cfgs))
	cpu := make([]time.Duration, len(cfgs))
	for n := range *gets + 200 {
		for i, hc := range hcs {
			url := cfgs[i].Host + "/api/v1/namespaces/default"
			cpu0, start := cpuTime(), time.Now()
			resp, err := hc.Get(url)
			if err != nil {
				return nil, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
			}
			if n >= 200 { // warm-up
				ds[i] = append(ds[i], time.Since(start))
				cpu[i] += cpuTime() - cpu0
			}
		}
	}
	out := make([]latency, len(cfgs))
	for i, d := range ds {
		slices.Sort(d)
		out[i] = latency{d[len(d)/2], d[len(d)*99/100], cpu[i] / time.Duration(len(d))}
	}
	return out, nil
}

// impersonating returns a copy of the direct caller configuration that
// sends the Impersonate-User and -Group headers the agent adds for the
// bench's caller, so that the API server's own cost of impersonation (an
// authorization check per name) shows apart from the tunnel's.
func (b *bench) impersonating(cfg *rest.Config) (*rest.Config, error) {
	blk, _ := pem.Decode(cfg.CertData)
	if blk == nil {
		return nil, fmt.Errorf("admin client certificate: no PEM block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("admin client certificate: %w", err)
	}
	as := mapping.Map(mapping.DefaultPrefix, mapping.Identity{User: cert.Subject.CommonName, Groups: cert.Subject.Organization})
	cfg = h1(cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: as.User, Groups: as.Groups}
	return cfg, nil
}

func (b *bench) createBulk(ctx context.Context) error {
	c := kubernetes.NewForConfigOrDie(b.admin)
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bulk"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for i := range bulkObjects {
		if _, err := c.CoreV1().ConfigMaps("bulk").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i)},
			Data:       map[string]string{"blob": strings.Repeat("x", bulkSize)},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

type throughput struct {
	rate     float64 // bytes per second, best of n
	cpuPerGB time.Duration
}

// throughput returns the best bytes/second of n GETs of path and the CPU
// time this process spent per GB over all of them.
func (b *bench) throughput(cfg *rest.Config, path string, n int) (throughput, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return throughput{}, err
	}
	var best float64
	var total int64
	cpu0 := cpuTime()
	for range n {
		start := time.Now()
		resp, err := hc.Get(cfg.Host + path)
		if err != nil {
			return throughput{}, err
		}
		got, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return throughput{}, fmt.Errorf("GET %s: %s, %v", path, resp.Status, err)
		}
		total += got
		best = max(best, float64(got)/time.Since(start).Seconds())
	}
	return throughput{best, time.Duration(float64(cpuTime()-cpu0) * 1e9 / float64(total))}, nil
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// watchTimes are the figures of one watch measurement.
type watchTimes struct {
	open time.Duration // until every watch was open
	all  time.Duration // from the change until every watch saw it
	half time.Duration // … until half of them had (a straggler shows as all ≫ half)
}

// watches opens that many watches on one namespace, then creates an object
// and returns the time to open them all and the times until half and all
// saw it.
func (b *bench) watches(ctx context.Context, cfg *rest.Config) (watchTimes, error) {
	c := kubernetes.NewForConfigOrDie(b.admin)
	ns := fmt.Sprintf("watch-%d", time.Now().UnixNano())
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return watchTimes{}, err
	}
	cfg = rest.CopyConfig(cfg)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return watchTimes{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		opened, seen sync.WaitGroup
		errOnce      sync.Once
		firstErr     error
		mu           sync.Mutex
		arrivals     []time.Time
	)
	start := time.Now()
	for range watches {
		opened.Add(1)
		seen.Add(1)
		go func() {
			defer seen.Done()
			req, _ := http.NewRequestWithContext(wctx, http.MethodGet, cfg.Host+"/api/v1/namespaces/"+ns+"/configmaps?watch=true", nil)
			resp, err := hc.Do(req)
			opened.Done()
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			defer resp.Body.Close()
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
		}()
	}
	opened.Wait()
	openAll := time.Since(start)
	if firstErr != nil {
		return watchTimes{}, firstErr
	}
	time.Sleep(500 * time.Millisecond) // let the watches register in etcd
	start = time.Now()
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ping"}}, metav1.CreateOptions{}); err != nil {
		return watchTimes{}, err
	}
	seen.Wait()
	if firstErr != nil {
		return watchTimes{}, firstErr
	}
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	return watchTimes{openAll, arrivals[len(arrivals)-1].Sub(start), arrivals[len(arrivals)/2].Sub(start)}, nil
}

// watchRuns measures the watches through each of cfgs (direct, meshfleet),
// taking turns, -runs times, and prints every figure and the medians.
// (remotedialer is not measured: Rancher's front opens an HTTP/1.1
// connection through the tunnel per watch, and a thousand TLS handshakes
// at once through it outlast client-go's 10 s handshake timeout here.)
func (b *bench) watchRuns(ctx context.Context, cfgs ...*rest.Config) error {
	names := []string{"direct", "meshfleet"}
	figures := []struct {
		name string
		of   func(watchTimes) time.Duration
	}{
		{"open all", func(w watchTimes) time.Duration { return w.open }},
		{"event to half", func(w watchTimes) time.Duration { return w.half }},
		{"event to all", func(w watchTimes) time.Duration { return w.all }},
	}
	ws := make([][]watchTimes, len(cfgs))
	show := func(head string, pick func(i int, of func(watchTimes) time.Duration) time.Duration) {
		fmt.Println(head)
		for _, f := range figures {
			fmt.Printf("  %-14s", f.name)
			for i := range cfgs {
				fmt.Printf("  %s %s", names[i], ms(pick(i, f.of)))
			}
			fmt.Println()
		}
	}
	for n := range *runs {
		for i, cfg := range cfgs {
			w, err := b.watches(ctx, cfg)
			if err != nil {
				return err
			}
			ws[i] = append(ws[i], w)
		}
		show(fmt.Sprintf("run %d, %d watches:", n+1, watches), func(i int, of func(watchTimes) time.Duration) time.Duration { return of(ws[i][n]) })
	}
	show(fmt.Sprintf("median of %d runs:", *runs), func(i int, of func(watchTimes) time.Duration) time.Duration {
		d := make([]time.Duration, len(ws[i]))
		for k, w := range ws[i] {
			d[k] = of(w)
		}
		slices.Sort(d)
		return d[len(d)/2]
	})
	return nil
}

// reconnect restarts the API server's agent and returns the median time from
// starting the new agent to the first successful GET through it.
func (b *bench) reconnect(ctx context.Context) (time.Duration, error) {
	hc, err := rest.HTTPClientFor(b.callerConfig("remote"))
	if err != nil {
		return 0, err
	}
	url := b.apiURL + tunnel.ClustersPathPrefix + "remote/api/v1/namespaces/default"
	var ds []time.Duration
	for range restarts {
		b.agent()
		start := time.Now()
		if err := b.startAgent(ctx, "remote", b.admin); err != nil {
			return 0, err
		}
		for {
			resp, err := hc.Get(url)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
func signedMs(d time.Duration) string {
	return fmt.Sprintf("%+.3f ms", float64(d)/1e6)
}
func mbps(v float64) string     { return fmt.Sprintf("%.0f", v/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }
func secs(d time.Duration) string {
	return fmt.Sprintf("%.2f s", d.Seconds())
}
func pct(a, b float64) string { return fmt.Sprintf("%.0f%%", 100*a/b) }
