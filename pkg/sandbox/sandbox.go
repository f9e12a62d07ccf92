// Package sandbox brings up a local multi-cluster environment on this
// machine, with no containers: one etcd, a primary and remote kube-apiservers
// (package localcluster), meshfleet's CRDs, the operator running against the
// primary, and an Istio resource it installs. It is what `meshctl sandbox up`
// and `make sandbox` run.
package sandbox

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/crds"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/localcluster"
	"github.com/meshfleet/meshfleet/pkg/operator"
)

// Options configure a sandbox.
type Options struct {
	// Dir holds every process's data, certificates, kubeconfigs and logs.
	Dir string
	// Remotes is the number of remote clusters besides the primary.
	Remotes int
	// Istio is the Istio resource installed in the primary; nil installs DefaultIstio.
	Istio *v1beta1.Istio
	// Progress receives one line per step.
	Progress io.Writer
}

// DefaultIstio is the control plane the sandbox installs unless told otherwise.
func DefaultIstio() *v1beta1.Istio {
	return &v1beta1.Istio{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: "Istio"},
		ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Spec: v1beta1.IstioSpec{
			Version:      "1.30.3",
			ClusterName:  "primary",
			MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
			LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
			Gateways:     v1beta1.GatewaysSpec{Enabled: true},
		},
	}
}

// Sandbox is a running environment.
type Sandbox struct {
	Dir      string
	Etcd     *localcluster.Etcd
	Clusters []*localcluster.Cluster
	stopOp   context.CancelFunc
	opDone   chan error
}

// Primary is the cluster that runs the control plane.
func (s *Sandbox) Primary() *localcluster.Cluster { return s.Clusters[0] }

// Up starts the sandbox and returns once the operator has deployed the
// control plane. On error, whatever was started is stopped again.
func Up(ctx context.Context, opts Options) (s *Sandbox, err error) {
	if opts.Istio == nil {
		opts.Istio = DefaultIstio()
	}
	say := func(format string, args ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox dir: %w", err)
	}
	bins, err := localcluster.DefaultBinaries()
	if err != nil {
		return nil, err
	}
	s = &Sandbox{Dir: opts.Dir}
	defer func() {
		if err != nil {
			_ = s.Down()
		}
	}()

	say("• starting etcd")
	if s.Etcd, err = localcluster.StartEtcd(ctx, filepath.Join(opts.Dir, "etcd"), bins.Etcd); err != nil {
		return s, err
	}
	names := []string{"primary"}
	for i := 1; i <= opts.Remotes; i++ {
		names = append(names, fmt.Sprintf("remote-%d", i))
	}
	for _, n := range names {
		say("• starting kube-apiserver and kube-controller-manager for cluster %s", n)
		c, err := localcluster.StartCluster(ctx, s.Etcd, bins, localcluster.ClusterOptions{
			Name: n, Dir: filepath.Join(opts.Dir, n), ControllerManager: true,
		})
		if err != nil {
			return s, fmt.Errorf("cluster %s: %w", n, err)
		}
		s.Clusters = append(s.Clusters, c)
	}

	cfg := s.Primary().Config
	scheme, err := operator.Scheme()
	if err != nil {
		return s, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return s, fmt.Errorf("client for primary: %w", err)
	}
	say("• installing meshfleet's CRDs")
	if err := ApplyCRDs(ctx, c); err != nil {
		return s, err
	}

	say("• starting the operator (log: %s)", filepath.Join(opts.Dir, "operator.log"))
	logFile, err := os.Create(filepath.Join(opts.Dir, "operator.log"))
	if err != nil {
		return s, fmt.Errorf("operator log: %w", err)
	}
	ctrllog.SetLogger(zap.New(zap.WriteTo(logFile)))
	mgr, err := operator.New(cfg, operator.Options{MetricsAddr: "127.0.0.1:0", HealthAddr: "0"})
	if err != nil {
		return s, err
	}
	opCtx, cancel := context.WithCancel(context.Background())
	s.stopOp, s.opDone = cancel, make(chan error, 1)
	go func() { s.opDone <- mgr.Start(opCtx) }()

	ist := opts.Istio.DeepCopy()
	say("• applying Istio %s/%s (version %s)", ist.Namespace, ist.Name, ist.Spec.Version)
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ist.Namespace}}}
	if err := client.IgnoreAlreadyExists(c.Create(ctx, ns)); err != nil {
		return s, fmt.Errorf("create namespace %s: %w", ist.Namespace, err)
	}
	if err := client.IgnoreAlreadyExists(c.Create(ctx, ist)); err != nil {
		return s, fmt.Errorf("create Istio %s/%s: %w", ist.Namespace, ist.Name, err)
	}
	if err := waitDeployed(ctx, c, client.ObjectKeyFromObject(ist), say); err != nil {
		return s, err
	}
	return s, nil
}

// Down stops every process of the sandbox.
func (s *Sandbox) Down() error {
	var first error
	if s.stopOp != nil {
		s.stopOp()
		<-s.opDone
	}
	for i := len(s.Clusters) - 1; i >= 0; i-- {
		if err := s.Clusters[i].Stop(); err != nil && first == nil {
			first = err
		}
	}
	if s.Etcd != nil {
		if err := s.Etcd.Stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ApplyCRDs applies meshfleet's CRDs and waits until the API server serves them.
func ApplyCRDs(ctx context.Context, c client.Client) error {
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil {
		return err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := fs.ReadFile(crds.FS, f)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			return fmt.Errorf("crds/%s: %w", f, err)
		}
		objs = append(objs, u)
	}
	a := &apply.Applier{Client: c, FieldManager: "meshfleet-sandbox"}
	if _, err := a.Apply(ctx, objs); err != nil {
		return fmt.Errorf("apply meshfleet CRDs: %w", err)
	}
	// The API server serves a new kind a moment after the CRD is created.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.List(ctx, &v1beta1.IstioList{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("meshfleet CRDs not served after 30s: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitDeployed(ctx context.Context, c client.Client, key client.ObjectKey, say func(string, ...any)) error {
	seen := map[string]string{}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		ist := &v1beta1.Istio{}
		if err := c.Get(ctx, key, ist); err != nil {
			return fmt.Errorf("read Istio %s: %w", key, err)
		}
		for _, cond := range ist.Status.Conditions {
			line := fmt.Sprintf("%s %s", cond.Status, cond.Message)
			if seen[cond.Type] != line {
				seen[cond.Type] = line
				say("  %-27s %-7s %s", cond.Type, cond.Status, cond.Message)
			}
		}
		if ist.Status.Phase == v1beta1.PhaseFailed {
			return fmt.Errorf("the control plane of Istio resource %s failed: see its conditions above", key)
		}
		if meta.IsStatusConditionTrue(ist.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the control plane of Istio resource %s was not deployed in time: %w", key, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}
