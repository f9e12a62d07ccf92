//go:build integration

// Command install measures the operator against real kube-apiservers and
// prints a table: time from creating an Istio resource to ControlPlaneDeployed
// and to Ready, next to a baseline measured in the same run (kubectl apply
// --server-side of the same rendered manifest on a fresh cluster), and API
// writes per steady-state resync (target 0).
//
//	go run -tags integration ./tests/bench/install
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/sandbox"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework/fakerollout"
)

const resyncs = 5

func main() {
	ctrllog.SetLogger(logr.Discard())
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "meshfleet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins, err := localcluster.DefaultBinaries()
	if err != nil {
		return err
	}
	etcd, err := localcluster.StartEtcd(ctx, filepath.Join(dir, "etcd"), bins.Etcd)
	if err != nil {
		return err
	}
	defer etcd.Stop()

	baseline, err := baselineApply(ctx, dir, etcd, bins)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl, c, err := startOperator(ctx, dir, etcd, bins)
	if cl != nil {
		defer cl.Stop()
	}
	if err != nil {
		return err
	}
	deployed, ready, writes, err := operatorInstall(ctx, c)
	if err != nil {
		return err
	}

	fmt.Println()
	fmt.Println("| measurement | meshfleet operator | baseline (kubectl apply --server-side of the same manifest) |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| create Istio → ControlPlaneDeployed | %v | %v |\n", deployed.Round(time.Millisecond), baseline.Round(time.Millisecond))
	fmt.Printf("| create Istio → Ready (rollout reported by the harness) | %v | – |\n", ready.Round(time.Millisecond))
	fmt.Printf("| API writes per steady-state resync (mean of %d) | %.1f (target 0) | – |\n", resyncs, writes)
	return nil
}

// baselineApply times kubectl applying the rendered manifest of the sample:
// CRDs, wait until established, then every object.
func baselineApply(ctx context.Context, dir string, etcd *localcluster.Etcd, bins localcluster.Binaries) (time.Duration, error) {
	c, err := localcluster.StartCluster(ctx, etcd, bins, localcluster.ClusterOptions{Name: "baseline", Dir: filepath.Join(dir, "baseline")})
	if err != nil {
		return 0, err
	}
	defer c.Stop()
	ist := sandbox.DefaultIstio()
	cp, errs := render.FromIstio(ist)
	if len(errs) > 0 {
		return 0, errs.ToAggregate()
	}
	m, err := render.Render(cp)
	if err != nil {
		return 0, err
	}
	write := func(name string, objs []map[string]any) (string, error) {
		var b strings.Builder
		for _, o := range objs {
			y, err := yaml.Marshal(o)
			if err != nil {
				return "", err
			}
			b.WriteString("---\n")
			b.Write(y)
		}
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, []byte(b.String()), 0o644)
	}
	var crdObjs, objs []map[string]any
	for _, o := range m.CRDs {
		crdObjs = append(crdObjs, o.Object)
	}
	for _, o := range m.Objects {
		objs = append(objs, o.Object)
	}
	crdFile, err := write("crds.yaml", crdObjs)
	if err != nil {
		return 0, err
	}
	objFile, err := write("objects.yaml", objs)
	if err != nil {
		return 0, err
	}
	kubectl := func(args ...string) error {
		out, err := exec.CommandContext(ctx, bins.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := kubectl("create", "namespace", ist.Namespace); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := kubectl("apply", "--server-side", "-f", crdFile); err != nil {
		return 0, err
	}
	if err := kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"); err != nil {
		return 0, err
	}
	if err := kubectl("apply", "--server-side", "-f", objFile); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// startOperator starts a cluster (no controller manager, so the benchmark
// reports rollouts itself), installs meshfleet's CRDs and runs the operator.
func startOperator(ctx context.Context, dir string, etcd *localcluster.Etcd, bins localcluster.Binaries) (*localcluster.Cluster, client.Client, error) {
	cl, err := localcluster.StartCluster(ctx, etcd, bins, localcluster.ClusterOptions{Name: "operator", Dir: filepath.Join(dir, "operator")})
	if err != nil {
		return nil, nil, err
	}
	scheme, err := operator.Scheme()
	if err != nil {
		return cl, nil, err
	}
	c, err := client.New(cl.Config, client.Options{Scheme: scheme})
	if err != nil {
		return cl, nil, err
	}
	crds, err := install.CRDs()
	if err != nil {
		return cl, nil, err
	}
	if err := install.Apply(ctx, c, crds); err != nil {
		return cl, nil, err
	}
	mgr, err := operator.New(cl.Config, operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: time.Hour})
	if err != nil {
		return cl, nil, err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "operator:", err)
		}
	}()
	return cl, c, nil
}

func operatorInstall(ctx context.Context, c client.Client) (deployed, ready time.Duration, writes float64, err error) {
	ist := sandbox.DefaultIstio()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ist.Namespace}}); client.IgnoreAlreadyExists(err) != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	if err := c.Create(ctx, ist); err != nil {
		return 0, 0, 0, err
	}
	key := client.ObjectKeyFromObject(ist)
	condition := func(t string) func() (bool, error) {
		return func() (bool, error) {
			cur := &v1beta1.Istio{}
			if err := c.Get(ctx, key, cur); err != nil {
				return false, err
			}
			return meta.IsStatusConditionTrue(cur.Status.Conditions, t), nil
		}
	}
	if err := waitFor(ctx, 2*time.Minute, condition(v1beta1.ConditionControlPlaneDeployed)); err != nil {
		return 0, 0, 0, err
	}
	deployed = time.Since(start)
	// No kubelet here: report the rollouts the way the deployment controller would.
	for _, name := range []string{"istiod", "istio-ingressgateway"} {
		if _, err := fakerollout.RollOut(ctx, c, ist.Namespace, name); err != nil {
			return 0, 0, 0, err
		}
	}
	if err := waitFor(ctx, 2*time.Minute, condition(v1beta1.ConditionReady)); err != nil {
		return 0, 0, 0, err
	}
	ready = time.Since(start)

	// Let reconciles queued by the install's own events drain, then measure.
	time.Sleep(2 * time.Second)
	before := gather("meshfleet_operator_api_writes_total")
	for i := 0; i < resyncs; i++ {
		n := gather("controller_runtime_reconcile_total")
		cur := &v1beta1.Istio{}
		if err := c.Get(ctx, key, cur); err != nil {
			return 0, 0, 0, err
		}
		patch := client.MergeFrom(cur.DeepCopy())
		metav1.SetMetaDataAnnotation(&cur.ObjectMeta, "bench/resync", fmt.Sprint(i))
		if err := c.Patch(ctx, cur, patch); err != nil {
			return 0, 0, 0, err
		}
		if err := waitFor(ctx, 30*time.Second, func() (bool, error) { return gather("controller_runtime_reconcile_total") > n, nil }); err != nil {
			return 0, 0, 0, err
		}
	}
	time.Sleep(500 * time.Millisecond)
	return deployed, ready, (gather("meshfleet_operator_api_writes_total") - before) / resyncs, nil
}

func waitFor(ctx context.Context, limit time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// gather sums a counter family from the operator's metrics registry.
func gather(name string) float64 {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
