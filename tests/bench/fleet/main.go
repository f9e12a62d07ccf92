//go:build e2e

// Command fleet measures a mesh of many remote clusters: N kube-apiservers,
// each with an etcd of its own (-shared-etcd: one etcd for all, 50 MiB a
// cluster less), next to a primary, started -parallel at a time, and a real
// istiod in the primary discovering every remote cluster, first through
// remote secrets written by hand with each remote's admin kubeconfig (the
// baseline: istioctl's way), then through meshfleet's tunnel (one agent per
// cluster, one tunnel server). It prints the time to all API servers Ready,
// the memory of each kind of process, the tunnel server's memory per agent,
// and istiod's time to have synced every remote cluster and its memory in
// both setups.
//
// Then the real operator (a process of its own) joins every remote at once
// with RemoteIstios, first through kubeconfig Secrets, then through the
// tunnel: time to every RemoteIstio Ready and to istiod synced with every
// cluster (next to the remote secrets written by hand), and the operator's
// CPU and resident memory (-operator=false skips it). The join of one
// cluster up to the first RPC is tests/bench/join.
//
// At 20 remotes (the default) it takes 5 to 11 minutes on two loaded cores
// (5 to 7 since the operator's render caches, decisions 58 and 70) and
// 7.5 GiB of memory (21 × 285 MiB of kube-apiserver, 21 × 50 MiB of
// etcd); -clusters 3 takes about 2 minutes. The 21 idle API servers alone keep one
// core about busy.
//
//	go run -tags e2e ./tests/bench/fleet [-clusters 20] [-operator=false] [-shared-etcd]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

var (
	clusters   = flag.Int("clusters", 20, "remote clusters")
	memProfile = flag.String("memprofile", "", "write a heap profile here while istiod watches every cluster through the tunnel")
	opProfile  = flag.String("operator-cpuprofile", "", "write a CPU profile of the operator's whole run here")
	withOp     = flag.Bool("operator", true, "also join every remote with the real operator (RemoteIstios), directly and through the tunnel")
	sharedEtcd = flag.Bool("shared-etcd", false, "keep every cluster in one etcd (under its own prefix) instead of an etcd each")
	parallel   = flag.Int("parallel", 5, "API servers (and their etcds) started at once")
	startWait  = flag.Duration("start-timeout", 5*time.Minute, "how long each API server may take to start")
	joinWait   = flag.Duration("join-timeout", 0, "how long a join of every remote may take (default: 10 minutes, or 1 minute per remote if more)")
	timeout    = flag.Duration("timeout", 0, "how long the whole bench may take (default: 30 minutes + 3 minutes per remote)")
)

const ns = "istio-system"

func main() {
	if runOperatorChild() {
		return
	}
	flag.Parse()
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(io.Discard, nil)))
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	if *timeout == 0 {
		*timeout = 30*time.Minute + time.Duration(*clusters)*3*time.Minute
	}
	if *joinWait == 0 {
		*joinWait = max(10*time.Minute, time.Duration(*clusters)*time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	names := []string{"primary"}
	var remotes []string
	for i := range *clusters {
		name := fmt.Sprintf("remote-%02d", i+1)
		remotes = append(remotes, name)
		names = append(names, name)
	}
	start := time.Now()
	te, stop, err := startFleet(ctx, names, fleetOptions{etcdEach: !*sharedEtcd, parallel: *parallel, timeout: *startWait})
	if err != nil {
		return fmt.Errorf("start %d API servers: %w", len(names), err)
	}
	defer stop()
	ready := time.Since(start)
	fmt.Fprintf(os.Stderr, "%d API servers Ready in %v (%s)\n", len(names), ready.Round(time.Millisecond), etcdLayout())
	mem := processMemory(te.Dir)

	primary := te.Cluster("primary")
	pk := kubernetes.NewForConfigOrDie(primary.Config)
	if err := localistiod.InstallCRDs(ctx, primary.Config); err != nil {
		return err
	}
	if _, err := pk.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	// Baseline: a remote secret per cluster with its admin kubeconfig.
	direct := map[string][]byte{}
	for _, r := range remotes {
		if direct[r], err = os.ReadFile(te.Cluster(r).Kubeconfig); err != nil {
			return err
		}
	}
	base, err := discover(ctx, te, pk, "direct", direct, nil)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}

	// The tunnel: one server, an agent per remote cluster.
	tn, err := startTunnel(ctx, te, remotes)
	if err != nil {
		return err
	}
	defer tn.stop()
	var busy float64
	through, err := discover(ctx, te, pk, "tunnel", tn.kubeconfigs, func() {
		busy = heapInUse() - tn.heap0
		if *memProfile != "" {
			if f, err := os.Create(*memProfile); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	})
	if err != nil {
		return fmt.Errorf("through the tunnel: %w", err)
	}

	var opFresh, opTunnel, opDirect joinResult
	if *withOp {
		if opFresh, opTunnel, opDirect, err = operatorJoins(ctx, te, tn, remotes); err != nil {
			return fmt.Errorf("operator joins: %w", err)
		}
	}

	fmt.Printf("\nfleet: 1 primary + %d remote clusters (%s), %d cores, load average %s at the end\n\n", *clusters, etcdLayout(), runtime.NumCPU(), loadAverage())
	fmt.Printf("%-58s %s\n", fmt.Sprintf("all API servers Ready (started %d at a time)", *parallel), ready.Round(time.Millisecond))
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range mem {
			if !yield(k) {
				return
			}
		}
	}) {
		m := mem[name]
		fmt.Printf("%-58s %d × %.0f MiB = %.0f MiB\n", "resident memory: "+name, m.n, m.rss/float64(m.n), m.rss)
	}
	fmt.Printf("%-58s %.1f MiB for %d agents: %.0f KiB per agent (Go heap after GC)\n", "tunnel server + agents (in-process)",
		tn.heap/(1<<20), *clusters, tn.heap/1024/float64(*clusters))
	fmt.Printf("%-58s %.1f MiB: %.0f KiB per agent\n", "  the same with istiod watching every cluster through it",
		busy/(1<<20), busy/1024/float64(*clusters))
	fmt.Printf("%-58s %s\n", "all agents connected", tn.connected.Round(time.Millisecond))
	fmt.Printf("\n%-40s %26s %26s\n", "istiod discovering every remote", "baseline: secrets by hand", "meshfleet: via the tunnel")
	fmt.Printf("%-40s %26s %26s\n", "secrets written → all clusters synced", base.synced.Round(time.Millisecond), through.synced.Round(time.Millisecond))
	fmt.Printf("%-40s %22.0f MiB %22.0f MiB\n", "istiod resident memory, synced", base.rss, through.rss)
	if *withOp {
		sec := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		mib := func(v float64) string { return fmt.Sprintf("%.0f MiB", v) }
		row := func(name, base string, f func(joinResult) string) {
			fmt.Printf("%-40s %18s %18s %18s %18s\n", name, base, f(opFresh), f(opTunnel), f(opDirect))
		}
		fmt.Printf("\n%-40s %18s %18s %18s %18s\n", fmt.Sprintf("joining all %d remotes at once", *clusters),
			"by hand", "operator: direct", "then: tunnel", "then: direct")
		fmt.Printf("%-40s %18s %18s %18s %18s\n", "", "(remote secrets)", "(fresh remotes)", "(CRDs in place)", "(CRDs in place)")
		row("created → every RemoteIstio Ready", "-", func(r joinResult) string { return sec(r.ready) })
		row("created → istiod synced every cluster", sec(base.synced), func(r joinResult) string { return sec(r.synced) })
		row("operator CPU, created → all Ready", "-", func(r joinResult) string { return sec(r.cpu) })
		row("operator resident memory, all Ready", "-", func(r joinResult) string { return mib(r.rss) })
		row("operator peak resident memory so far", "-", func(r joinResult) string { return mib(r.hwm) })
	}
	return nil
}

// etcdLayout says where the clusters keep their data. A shared etcd
// (-shared-etcd) saves 50 MiB a cluster; none of the figures is etcd's
// (istiod and the tunnel read through each API server's watch cache), but
// the operator's first join writes Istio's CRDs into every remote at once,
// and those writes meet in a shared etcd.
func etcdLayout() string {
	if *sharedEtcd {
		return "kube-apiservers sharing one etcd"
	}
	return "one etcd and one kube-apiserver each"
}

// loadAverage is the machine's 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

type discovery struct {
	synced time.Duration
	rss    float64 // MiB
}

// discover starts istiod in the primary, writes a remote secret per
// kubeconfig, and returns the time until istiod reports every cluster
// synced (/debug/clusterz) and its resident memory then. It stops istiod
// and deletes the secrets before returning.
func discover(ctx context.Context, te *testenv.Env, pk kubernetes.Interface, name string, kubeconfigs map[string][]byte, synced func()) (discovery, error) {
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: te.Cluster("primary").Kubeconfig, Dir: filepath.Join(te.Dir, "istiod-"+name), ClusterID: "primary",
	})
	if err != nil {
		return discovery{}, err
	}
	defer d.Stop()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(kubeconfigs))
	for cluster, kc := range kubeconfigs {
		wg.Go(func() {
			_, err := pk.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "remote-" + cluster, Namespace: ns,
					Labels:      map[string]string{render.LabelMultiCluster: "true"},
					Annotations: map[string]string{render.AnnotationClusterName: cluster}},
				Data: map[string][]byte{cluster: kc},
			}, metav1.CreateOptions{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return discovery{}, err
		}
	}
	defer func() {
		for cluster := range kubeconfigs {
			_ = pk.CoreV1().Secrets(ns).Delete(context.Background(), "remote-"+cluster, metav1.DeleteOptions{})
		}
	}()
	var last string
	for {
		if ctx.Err() != nil || time.Since(start) > *joinWait {
			return discovery{}, fmt.Errorf("istiod did not sync every cluster within %v (last /debug/clusterz: %s; log %s)", *joinWait, last, d.LogPath)
		}
		n, s, err := syncedClusters(d.HTTPAddr)
		last = s
		if err == nil && n >= len(kubeconfigs) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(5 * time.Second) // let it settle after the initial sync
	if synced != nil {
		synced()
	}
	var rss float64
	for _, m := range processMemory(filepath.Join(te.Dir, "istiod-"+name)) {
		rss += m.rss
	}
	return discovery{synced: took, rss: rss}, nil
}

// syncedClusters counts the remote clusters istiod reports synced.
func syncedClusters(httpAddr string) (int, string, error) {
	resp, err := http.Get("http://" + httpAddr + "/debug/clusterz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var infos []struct {
		ID         string `json:"id"`
		SecretName string `json:"secretName"`
		SyncStatus string `json:"syncStatus"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &infos); err != nil {
		return 0, string(b), err
	}
	n := 0
	status := map[string]int{}
	for _, i := range infos {
		if i.SecretName == "" {
			continue // the config cluster
		}
		status[i.SyncStatus]++
		if i.SyncStatus == "synced" {
			n++
		}
	}
	return n, fmt.Sprint(status), nil
}

type fleetTunnel struct {
	apiURL      string
	caPEM       []byte
	kubeconfigs map[string][]byte
	heap        float64 // bytes
	heap0       float64 // before the server started
	connected   time.Duration
	stops       []func()
}

func (t *fleetTunnel) stop() {
	for i := len(t.stops) - 1; i >= 0; i-- {
		t.stops[i]()
	}
}

// startTunnel starts a tunnel server and one agent per remote, and returns
// for each remote a kubeconfig that reaches it through the tunnel as the
// primary's admin (allowed by the access policy, bound to cluster-admin in
// the remote under its mapped name).
func startTunnel(ctx context.Context, te *testenv.Env, remotes []string) (*fleetTunnel, error) {
	t := &fleetTunnel{kubeconfigs: map[string][]byte{}}
	primary := te.Cluster("primary")
	now := time.Now()
	root, err := ca.NewRoot(ca.RootOptions{TTL: time.Hour, Now: now})
	if err != nil {
		return nil, err
	}
	sc, err := tunnel.IssueServerCertificate(root, []string{"127.0.0.1"}, tunnel.CertificateOptions{TTL: time.Hour, Now: now})
	if err != nil {
		return nil, err
	}
	serving, err := sc.TLSCertificate()
	if err != nil {
		return nil, err
	}
	clientCAs, err := tunnel.CABundleFromPEM(primary.CACertPEM)
	if err != nil {
		return nil, err
	}
	access := tunnel.DefaultAccessPolicy(tunnel.DefaultIstioNamespace, tunnel.DefaultMeshfleetNamespace)
	access.Allow = append(access.Allow, tunnel.AccessRule{User: "admin"})
	for _, r := range remotes {
		if _, err := kubernetes.NewForConfigOrDie(te.Cluster(r).Config).RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "fleet-bench-admin"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: mapping.User(access.Prefix, "admin")}},
		}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	heap0 := heapInUse()
	srv, err := tunnel.NewServer(tunnel.ServerOptions{ServingCertificate: tunnel.StaticKeyPair(serving), AgentCAs: tunnel.StaticCABundle(root.Cert),
		ClientCAs: clientCAs, Access: &access, Clusters: tunnel.NewClusterSet(remotes...), Logger: quiet,
		// The operator and istiod present tokens for the tunnel's audience.
		TokenReviews: kubernetes.NewForConfigOrDie(primary.Config).AuthenticationV1().TokenReviews()})
	if err != nil {
		return nil, err
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	agentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx, apiLn, agentLn); close(done) }()
	t.stops = append(t.stops, func() { cancel(); <-done })
	t.apiURL, t.caPEM = "https://"+apiLn.Addr().String(), root.CertPEM

	start := time.Now()
	for _, r := range remotes {
		ac, err := tunnel.IssueAgentCertificate(root, r, tunnel.CertificateOptions{TTL: time.Hour, Now: now})
		if err != nil {
			return nil, err
		}
		cert, err := ac.TLSCertificate()
		if err != nil {
			return nil, err
		}
		a, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: r, Servers: []string{"https://" + agentLn.Addr().String()},
			Certificate: tunnel.StaticKeyPair(cert), ServerCAs: tunnel.StaticCABundle(root.Cert), Upstream: te.Cluster(r).Config, Logger: quiet})
		if err != nil {
			return nil, err
		}
		actx, stopAgent := context.WithCancel(ctx)
		adone := make(chan struct{})
		go func() { _ = a.Run(actx); close(adone) }()
		t.stops = append(t.stops, func() { stopAgent(); <-adone })
		kc, err := kubeconfig(r, "https://"+apiLn.Addr().String()+tunnel.ClustersPathPrefix+r, root.CertPEM, primary.Config.CertData, primary.Config.KeyData)
		if err != nil {
			return nil, err
		}
		t.kubeconfigs[r] = kc
	}
	for _, r := range remotes {
		for len(srv.Agents(r)) == 0 {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("agent of %s did not connect", r)
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.connected = time.Since(start)
	t.heap, t.heap0 = heapInUse()-heap0, heap0
	return t, nil
}

func kubeconfig(name, server string, caPEM, cert, key []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

func heapInUse() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse)
}

type procMem struct {
	n   int
	rss float64 // MiB
}

// processMemory sums the resident memory of the processes whose command
// line mentions dir (the test environment's), by program name.
func processMemory(dir string) map[string]procMem {
	out := map[string]procMem{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmd), dir) {
			continue
		}
		prog := filepath.Base(strings.SplitN(string(cmd), "\x00", 2)[0])
		m := out[prog]
		m.n++
		m.rss += float64(rssKiB(pid)) / 1024
		out[prog] = m
	}
	return out
}

func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
