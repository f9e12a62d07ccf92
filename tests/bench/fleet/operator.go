//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/tests/framework/fakerollout"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// operatorEnv names the environment variable that makes the bench binary
// run the operator instead (a child process, so that its CPU and memory
// are its own): it holds an operatorChild as JSON.
const operatorEnv = "MESHFLEET_FLEET_BENCH_OPERATOR"

// operatorChild is what the operator process is started with.
type operatorChild struct {
	Kubeconfig      string
	TunnelURL       string
	TunnelCA        []byte
	IstiodTokenFile string
	TokenFile       string
	// CPUProfile, if set, is where the operator writes a CPU profile of
	// its whole run.
	CPUProfile string
}

// runOperatorChild runs the operator until SIGTERM, if this process was
// started as one; it reports whether it was.
func runOperatorChild() bool {
	spec := os.Getenv(operatorEnv)
	if spec == "" {
		return false
	}
	if err := func() error {
		var oc operatorChild
		if err := json.Unmarshal([]byte(spec), &oc); err != nil {
			return err
		}
		ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
		cfg, err := clientcmd.BuildConfigFromFlags("", oc.Kubeconfig)
		if err != nil {
			return err
		}
		mgr, err := operator.New(cfg, operator.Options{MetricsAddr: "0", HealthAddr: "0",
			Tunnel: &remoteistio.Tunnel{URL: oc.TunnelURL, CAData: oc.TunnelCA, IstiodTokenFile: oc.IstiodTokenFile, TokenFile: oc.TokenFile}})
		if err != nil {
			return err
		}
		if oc.CPUProfile != "" {
			f, err := os.Create(oc.CPUProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		return mgr.Start(ctx)
	}(); err != nil {
		fmt.Fprintln(os.Stderr, "operator:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// joinResult is one operator join of every remote.
type joinResult struct {
	ready, synced time.Duration
	cpu           time.Duration // the operator's, from create to all Ready
	rss, hwm      float64       // MiB, the operator's, then and at its peak so far
}

// operatorJoins runs the real operator (a process of its own) with the
// tunnel of tn, creates an Istio control plane, and joins every remote with
// a RemoteIstio three times, removing them in between: through kubeconfig
// Secrets (direct) into fresh remotes, through the tunnel, and direct again.
// istiod runs in each and its sync of every cluster is timed from the same
// start.
func operatorJoins(ctx context.Context, te *testenv.Env, tn *fleetTunnel, remotes []string) (fresh, tunnelled, direct joinResult, err error) {
	primary := te.Cluster("primary")
	scheme, err := operator.Scheme()
	if err != nil {
		return fresh, tunnelled, direct, err
	}
	pc, err := client.New(primary.Config, client.Options{Scheme: scheme})
	if err != nil {
		return fresh, tunnelled, direct, err
	}
	crds, err := install.CRDs()
	if err != nil {
		return fresh, tunnelled, direct, err
	}
	if err := install.Apply(ctx, pc, crds); err != nil {
		return fresh, tunnelled, direct, err
	}
	if err := poll(ctx, 30*time.Second, func() error { return pc.List(ctx, &v1beta1.RemoteIstioList{}) }); err != nil {
		return fresh, tunnelled, direct, fmt.Errorf("RemoteIstio kind not served: %w", err)
	}
	// Tokens for the tunnel's audience, as the kubelet projects them.
	opToken, istiodToken := filepath.Join(te.Dir, "operator-token"), filepath.Join(te.Dir, "istiod-token")
	if err := tunnel.WriteServiceAccountToken(ctx, primary.Config, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", opToken, time.Hour); err != nil {
		return fresh, tunnelled, direct, err
	}
	// What manifests/tunnel/agent.yaml grants in each remote: the tunnelled
	// operator's and istiod's bindings.
	for _, r := range remotes {
		if _, err := tunnel.InstallAgentRBAC(ctx, te.Cluster(r).Config, 3600); err != nil {
			return fresh, tunnelled, direct, fmt.Errorf("agent RBAC in %s: %w", r, err)
		}
	}

	spec, err := json.Marshal(operatorChild{Kubeconfig: primary.Kubeconfig, TunnelURL: tn.apiURL, TunnelCA: tn.caPEM,
		IstiodTokenFile: istiodToken, TokenFile: opToken, CPUProfile: *opProfile})
	if err != nil {
		return fresh, tunnelled, direct, err
	}
	self, err := os.Executable()
	if err != nil {
		return fresh, tunnelled, direct, err
	}
	logPath := filepath.Join(te.Dir, "operator.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fresh, tunnelled, direct, err
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), operatorEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fresh, tunnelled, direct, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid

	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: ns}, Spec: v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: "primary",
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
	}}
	if err := pc.Create(ctx, ist); err != nil {
		return fresh, tunnelled, direct, err
	}
	if err := poll(ctx, 3*time.Minute, func() error {
		got := &v1beta1.Istio{}
		if err := pc.Get(ctx, client.ObjectKeyFromObject(ist), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			var cs []string
			for _, c := range got.Status.Conditions {
				cs = append(cs, c.Type+"="+string(c.Status)+" "+c.Reason+": "+c.Message)
			}
			return fmt.Errorf("control plane not deployed: %s", strings.Join(cs, "; "))
		}
		return nil
	}); err != nil {
		return fresh, tunnelled, direct, fmt.Errorf("the Istio resource %s/istio: %w (operator log:\n%s)", ns, err, tail(logPath))
	}

	// The primary has no kubelet: its Deployments are reported rolled out,
	// so that the control plane is Ready and the Istio controller stops
	// looking again every 10 s (re-rendering its charts), which would be
	// counted in the joins' CPU.
	var rolledOut time.Time
	if err := poll(ctx, 3*time.Minute, func() error {
		if time.Since(rolledOut) > 2*time.Second {
			if _, err := fakerollout.RollOutAll(ctx, pc); err != nil {
				return err
			}
			rolledOut = time.Now()
		}
		got := &v1beta1.Istio{}
		if err := pc.Get(ctx, client.ObjectKeyFromObject(ist), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1beta1.ConditionReady) {
			return fmt.Errorf("control plane not Ready: %s", conditionsOf(got.Status.Conditions))
		}
		return nil
	}); err != nil {
		return fresh, tunnelled, direct, fmt.Errorf("the Istio resource %s/istio: %w (operator log:\n%s)", ns, err, tail(logPath))
	}

	// istiod's service account is the operator's (created with the
	// control plane); its token for the tunnel's audience, once it exists.
	if err := tunnel.WriteServiceAccountToken(ctx, primary.Config, ns, "istiod", istiodToken, time.Hour); err != nil {
		return fresh, tunnelled, direct, err
	}
	for _, r := range remotes {
		kc, err := os.ReadFile(te.Cluster(r).Kubeconfig)
		if err != nil {
			return fresh, tunnelled, direct, err
		}
		if err := pc.Create(ctx, install.KubeconfigSecret(ns, r+"-kubeconfig", kc)); err != nil {
			return fresh, tunnelled, direct, err
		}
	}
	// The first join of a remote installs Istio's CRDs there, which stay
	// when it leaves: the tunnel's join is compared with the second
	// direct one, both finding them in place.
	if fresh, err = joinAll(ctx, te, pc, pid, "operator-direct-fresh", remotes, true); err != nil {
		return fresh, tunnelled, direct, fmt.Errorf("direct: %w (operator log:\n%s)", err, tail(logPath))
	}
	if tunnelled, err = joinAll(ctx, te, pc, pid, "operator-tunnel", remotes, false); err != nil {
		return fresh, tunnelled, direct, fmt.Errorf("through the tunnel: %w (operator log:\n%s)", err, tail(logPath))
	}
	if direct, err = joinAll(ctx, te, pc, pid, "operator-direct", remotes, true); err != nil {
		return fresh, tunnelled, direct, fmt.Errorf("direct again: %w (operator log:\n%s)", err, tail(logPath))
	}
	return fresh, tunnelled, direct, nil
}

// joinAll starts istiod, creates a RemoteIstio per remote (with its
// kubeconfig Secret if direct, else through the tunnel) and times all of
// them Ready and istiod synced with every cluster; then it deletes them and
// waits until the operator has removed them.
func joinAll(ctx context.Context, te *testenv.Env, pc client.Client, pid int, name string, remotes []string, direct bool) (joinResult, error) {
	var res joinResult
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: te.Cluster("primary").Kubeconfig, Dir: filepath.Join(te.Dir, "istiod-"+name), ClusterID: "primary",
		// Remote secrets of tunnelled clusters carry istiod's tokenFile,
		// which istiod refuses unless told otherwise (as the rendered
		// istiod Deployment is).
		Env: []string{"PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS=tokenFile"},
	})
	if err != nil {
		return res, err
	}
	defer d.Stop()

	cpu0 := procCPU(pid)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(remotes))
	for _, r := range remotes {
		wg.Go(func() {
			ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: r, Namespace: ns}, Spec: v1beta1.RemoteIstioSpec{PilotAddress: "203.0.113.10"}}
			if direct {
				ri.Spec.KubeconfigSecretRef = &corev1.LocalObjectReference{Name: r + "-kubeconfig"}
			}
			errs <- pc.Create(ctx, ri)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return res, err
		}
	}
	var last string
	for res.ready == 0 || res.synced == 0 {
		if time.Since(start) > *joinWait || ctx.Err() != nil {
			return res, fmt.Errorf("not every cluster joined within %v: %s", *joinWait, last)
		}
		if res.ready == 0 {
			var list v1beta1.RemoteIstioList
			if err := pc.List(ctx, &list, client.InNamespace(ns)); err == nil {
				n := 0
				var notReady []string
				for _, ri := range list.Items {
					if meta.IsStatusConditionTrue(ri.Status.Conditions, v1beta1.ConditionReady) {
						n++
					} else if len(notReady) < 3 {
						notReady = append(notReady, ri.Name+": "+conditionsOf(ri.Status.Conditions))
					}
				}
				last = fmt.Sprintf("%d of %d Ready (%s)", n, len(remotes), strings.Join(notReady, "; "))
				if n == len(remotes) {
					res.ready = time.Since(start)
					res.cpu = procCPU(pid) - cpu0
					res.rss, res.hwm = procRSS(pid)
				}
			}
		}
		if res.synced == 0 {
			if n, _, err := syncedClusters(d.HTTPAddr); err == nil && n >= len(remotes) {
				res.synced = time.Since(start)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "%s: all %d RemoteIstios Ready in %v, istiod synced in %v\n", name, len(remotes), res.ready.Round(time.Millisecond), res.synced.Round(time.Millisecond))

	for _, r := range remotes {
		if err := pc.Delete(ctx, &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: r, Namespace: ns}}); err != nil && !apierrors.IsNotFound(err) {
			return res, err
		}
	}
	return res, poll(ctx, *joinWait, func() error {
		var list v1beta1.RemoteIstioList
		if err := pc.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d RemoteIstios still being removed", len(list.Items))
		}
		return nil
	})
}

// tail returns the last lines of the file at path.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

func conditionsOf(cs []metav1.Condition) string {
	var out []string
	for _, c := range cs {
		if c.Status != metav1.ConditionTrue {
			out = append(out, c.Type+"="+string(c.Status)+" "+c.Reason)
		}
	}
	return strings.Join(out, ", ")
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

// procCPU is the user and system CPU time process pid has used.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces), from field 3.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// procRSS returns process pid's resident memory and its peak, in MiB.
func procRSS(pid int) (rss, hwm float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		for key, dst := range map[string]*float64{"VmRSS:": &rss, "VmHWM:": &hwm} {
			if v, ok := strings.CutPrefix(line, key); ok {
				n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				*dst = float64(n) / 1024
			}
		}
	}
	return rss, hwm
}
