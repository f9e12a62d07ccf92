// Package localmesh brings up a meshfleet mesh on this machine, without
// containers, in one place for `meshctl sandbox` (internal/sandbox) and the
// tests (tests/framework): a primary and remote kube-apiservers
// (internal/localcluster), meshfleet's CRDs, the tunnel (one server and an
// agent per remote, or the highly available pair of servers behind a front
// with two agents per remote), the operator in this process, the Istio
// resource, the remotes' joins, a real istiod process (internal/localistiod)
// with the MeshConfig the operator rendered, and the locality server.
//
// Every component it starts is registered by name and can be killed (as a
// crash would end it) and restarted (Mesh.Kill, Mesh.Restart): the chaos
// suite's faults. Components outlive the context given to Start; Stop ends
// them.
package localmesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
)

// Connection is how the operator and istiod reach the remote clusters.
type Connection string

const (
	// Direct: through a kubeconfig Secret of each remote in the primary.
	Direct Connection = "direct"
	// Tunnel: through the tunnel server, to which agents in each remote
	// dial out; no credential of a remote is stored in the primary.
	Tunnel Connection = "tunnel"
)

// Options configure Start.
type Options struct {
	// Dir holds the data, certificates, kubeconfigs, tokens and logs of
	// what Start starts.
	Dir string
	// Clusters, when set, are running clusters the caller owns (and stops),
	// the primary first. Otherwise Start starts the primary and Remotes,
	// each on an etcd of its own, as components.
	Clusters []*localcluster.Cluster
	// Remotes are the remote clusters' names (with Clusters unset).
	Remotes []string
	// AggregatedRoles runs kube-controller-manager's clusterrole-aggregation
	// controller for every cluster Start starts.
	AggregatedRoles bool
	// FakeNodes runs, for the primary Start starts, kube-controller-manager's
	// rollout controllers, kube-scheduler and kwok, so that the Deployments
	// the operator renders roll out as on a cluster.
	FakeNodes bool
	// Istio is the Istio resource created in the primary.
	Istio *v1beta1.Istio
	// WaitFor is the Istio condition Start waits for (Ready if empty), for
	// at most WaitTimeout (3 minutes if zero).
	WaitFor     string
	WaitTimeout time.Duration
	// Connection is how remotes are reached; Direct if empty.
	Connection Connection
	// HATunnel runs the tunnel as deployed: TunnelServers servers
	// competing for a Lease behind a front, TunnelAgents agents per remote
	// started when it joins. Otherwise one server runs, and one agent per
	// remote starts with it.
	HATunnel bool
	// DirectClusters are remotes joined with kubeconfig Secrets although
	// Connection is Tunnel.
	DirectClusters []string
	// Operator are the operator's options; Tunnel is set in Tunnel mode,
	// and an unset Logger writes JSON to Dir/operator.log.
	Operator operator.Options
	// RemoteIstio is the spec of each remote's RemoteIstio (Join sets its
	// Network and, for direct remotes, KubeconfigSecretRef).
	RemoteIstio v1beta1.RemoteIstioSpec
	// JoinRemotes joins every remote during Start and waits until each is
	// Ready; otherwise the caller joins them (Join).
	JoinRemotes bool
	// Istiod starts istiod, once the remotes joined, with the MeshConfig of
	// the ConfigMap the operator rendered.
	Istiod bool
	// IstiodEnv is added to istiod's environment.
	IstiodEnv []string
	// Locality starts the locality server before istiod (with Istiod and
	// the Istio resource's localityLB enabled).
	Locality bool
	// Progress receives one line per step.
	Progress io.Writer
}

// Mesh is a running mesh. Its exported fields are set by Start.
type Mesh struct {
	Options Options
	Dir     string
	// Etcds are the clusters' etcds Start started, by cluster name.
	Etcds map[string]*localcluster.Etcd
	// Clusters are the primary and the remotes.
	Clusters []*localcluster.Cluster
	// C are controller-runtime clients (the operator's scheme) and Kube
	// client-go clientsets, by cluster name.
	C    map[string]client.Client
	Kube map[string]kubernetes.Interface
	// Operator is the operator running in this process.
	Operator *Operator
	// Tunnel is the single tunnel server and its agents (Tunnel mode
	// without HATunnel).
	Tunnel *LocalTunnel
	// Istiod is the running istiod (nil without Options.Istiod).
	Istiod *localistiod.Istiod
	// IstiodNote says why istiod's environment was amended, if it was.
	IstiodNote string
	// XDSAddr is where the locality server serves its debug view
	// (/debug/locality); istiod reads its rules from the primary's API.
	XDSAddr string
	// TunnelMetricsAddr serves the active tunnel server's /metrics (with
	// HATunnel).
	TunnelMetricsAddr string

	ha       *haTunnel
	comps    components
	stops    []func()
	stopOnce sync.Once
	stopErr  error
}

// Primary is the cluster that runs the control plane.
func (m *Mesh) Primary() *localcluster.Cluster { return m.Clusters[0] }

// Cluster returns the cluster called name, or nil.
func (m *Mesh) Cluster(name string) *localcluster.Cluster {
	for _, c := range m.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Namespace is the control plane's namespace.
func (m *Mesh) Namespace() string { return m.Options.Istio.Namespace }

func (m *Mesh) say(format string, args ...any) {
	if m.Options.Progress != nil {
		fmt.Fprintf(m.Options.Progress, format+"\n", args...)
	}
}

// Start brings the mesh up (see Options) and returns once the Istio
// resource has Options.WaitFor, the remotes joined (with JoinRemotes) and
// istiod serves (with Istiod). On error, whatever it started is stopped.
func Start(ctx context.Context, opts Options) (m *Mesh, err error) {
	if opts.Istio == nil {
		return nil, errors.New("localmesh: no Istio resource given")
	}
	if opts.Connection == "" {
		opts.Connection = Direct
	}
	if opts.WaitFor == "" {
		opts.WaitFor = v1beta1.ConditionReady
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = 3 * time.Minute
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("mesh directory: %w", err)
	}
	m = &Mesh{Options: opts, Dir: opts.Dir, Etcds: map[string]*localcluster.Etcd{},
		C: map[string]client.Client{}, Kube: map[string]kubernetes.Interface{}}
	defer func() {
		if err != nil {
			_ = m.Stop()
		}
	}()
	if err := m.startClusters(ctx); err != nil {
		return m, err
	}
	scheme, err := operator.Scheme()
	if err != nil {
		return m, err
	}
	for _, c := range m.Clusters {
		if m.C[c.Name], err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
			return m, fmt.Errorf("client for %s: %w", c.Name, err)
		}
		if m.Kube[c.Name], err = kubernetes.NewForConfig(c.Config); err != nil {
			return m, fmt.Errorf("clientset for %s: %w", c.Name, err)
		}
	}
	primary := m.C[m.Primary().Name]

	m.say("• installing meshfleet's CRDs")
	crds, err := install.CRDs()
	if err != nil {
		return m, err
	}
	if err := install.Apply(ctx, primary, crds); err != nil {
		return m, err
	}
	// Apply waits until the Istio kind is served; the operator's manager
	// also needs RemoteIstio in discovery when it is built.
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return primary.List(ctx, &v1beta1.RemoteIstioList{}) == nil, nil
	}); err != nil {
		return m, fmt.Errorf("RemoteIstio kind not served: %w", err)
	}
	ist := opts.Istio.DeepCopy()
	if err := install.Apply(ctx, primary, append(crds[:0:0], install.Namespace(ist.Namespace))); err != nil {
		return m, err
	}

	opOpts := opts.Operator
	if opts.Connection == Tunnel && len(m.Clusters) > 1 {
		m.say("• starting the tunnel (log: %s)", filepath.Join(opts.Dir, "tunnel.log"))
		tunnelCA, _, err := meshca.TunnelCA(ctx, primary, time.Now())
		if err != nil {
			return m, fmt.Errorf("tunnel CA: %w", err)
		}
		if opts.HATunnel {
			if m.ha, err = m.startTunnel(ctx, tunnelCA, ist.Namespace); err != nil {
				return m, fmt.Errorf("tunnel: %w", err)
			}
			if err := m.serveTunnelMetrics(m.ha); err != nil {
				return m, fmt.Errorf("tunnel metrics: %w", err)
			}
			opOpts.Tunnel = m.ha.operatorTunnel()
		} else {
			if m.Tunnel, err = m.startLocalTunnel(ctx, tunnelCA); err != nil {
				return m, fmt.Errorf("tunnel: %w", err)
			}
			opOpts.Tunnel = &remoteistio.Tunnel{URL: m.Tunnel.APIURL, CAData: tunnelCA.CertPEM,
				IstiodTokenFile: m.Tunnel.IstiodTokenFile, TokenFile: m.Tunnel.OperatorTokenFile}
		}
	}

	m.say("• starting the operator (log: %s)", filepath.Join(opts.Dir, "operator.log"))
	if m.Operator, err = StartOperator(m.Primary().Config, opOpts, filepath.Join(opts.Dir, "operator.log")); err != nil {
		return m, err
	}
	m.stops = append(m.stops, func() { _ = m.Operator.Stop() })
	m.comps.add(&component{name: ComponentOperator, start: m.Operator.Start, kill: func() error { _ = m.Operator.Stop(); return nil }})

	var xdsLn net.Listener
	if opts.Istiod && opts.Locality && ist.Spec.LocalityLB.Enabled {
		if xdsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return m, fmt.Errorf("locality server: %w", err)
		}
		m.XDSAddr = xdsLn.Addr().String()
	}
	m.say("• applying Istio %s/%s (version %s)", ist.Namespace, ist.Name, ist.Spec.Version)
	if ist.APIVersion == "" {
		ist.TypeMeta = metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: "Istio"}
	}
	istObj, err := install.ToUnstructured(ist, ist.TypeMeta)
	if err != nil {
		return m, err
	}
	if err := install.Apply(ctx, primary, append(crds[:0:0], istObj)); err != nil {
		return m, err
	}
	if err := m.wait(ctx, ist, opts.WaitFor); err != nil {
		return m, err
	}

	if opts.JoinRemotes {
		for _, rc := range m.Clusters[1:] {
			if err := m.Join(ctx, rc.Name, ""); err != nil {
				return m, err
			}
		}
		for _, rc := range m.Clusters[1:] {
			ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: rc.Name, Namespace: ist.Namespace}}
			if err := m.wait(ctx, ri, v1beta1.ConditionReady); err != nil {
				return m, err
			}
		}
	}
	if !opts.Istiod {
		return m, nil
	}
	if xdsLn != nil {
		m.say("• starting the locality server (debug: http://%s/debug/locality)", m.XDSAddr)
		if err := m.addLocality(ctx, xdsLn, ist.Namespace, filepath.Join(opts.Dir, "locality.log")); err != nil {
			return m, err
		}
	}
	m.say("• starting istiod (log: %s)", filepath.Join(opts.Dir, "istiod", "istiod.log"))
	if err := m.startIstiod(ctx); err != nil {
		return m, err
	}
	return m, nil
}

// startClusters starts the primary and the remotes, each on an etcd of
// its own, registered as components (etcd/<name>, apiserver/<name>) —
// unless the caller gave running clusters.
func (m *Mesh) startClusters(ctx context.Context) error {
	if len(m.Options.Clusters) > 0 {
		m.Clusters = slices.Clone(m.Options.Clusters)
		return nil
	}
	bins, err := localcluster.DefaultBinaries()
	if err != nil {
		return err
	}
	names := append([]string{"primary"}, m.Options.Remotes...)
	for i, n := range names {
		m.say("• starting etcd and kube-apiserver for cluster %s", n)
		opts := localcluster.ClusterOptions{Name: n, Dir: filepath.Join(m.Dir, n)}
		if m.Options.AggregatedRoles {
			opts.ControllerManager, opts.Controllers = true, localcluster.AggregationControllers
		}
		if i == 0 && m.Options.FakeNodes {
			opts.ControllerManager, opts.FakeNodes = true, true
			opts.Controllers = append(slices.Clone(localcluster.RolloutControllers), opts.Controllers...)
		}
		if err := m.startCluster(ctx, bins, opts); err != nil {
			return fmt.Errorf("cluster %s: %w", n, err)
		}
	}
	return nil
}

// Join joins remote on network: a direct remote (Connection Direct, or
// one of DirectClusters) with its kubeconfig Secret, a tunnelled one
// through the tunnel, whose server accepts its agents once its RemoteIstio
// exists (with HATunnel its agents start now). It returns once the tunnel
// server holds an agent of a tunnelled remote.
func (m *Mesh) Join(ctx context.Context, remote, network string) error {
	rc := m.Cluster(remote)
	if rc == nil {
		return fmt.Errorf("no cluster %s in the mesh", remote)
	}
	ns := m.Namespace()
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: ns}, Spec: *m.Options.RemoteIstio.DeepCopy()}
	ri.Spec.Network = network
	if m.direct(remote) {
		m.say("• joining cluster %s directly", remote)
		name, err := m.KubeconfigSecret(ctx, remote)
		if err != nil {
			return err
		}
		ri.Spec.KubeconfigSecretRef = &corev1.LocalObjectReference{Name: name}
	}
	if err := client.IgnoreAlreadyExists(m.C[m.Primary().Name].Create(ctx, ri)); err != nil {
		return fmt.Errorf("creating RemoteIstio %s/%s: %w", ns, remote, err)
	}
	switch {
	case m.direct(remote):
		return nil
	case m.ha != nil:
		m.say("• joining cluster %s through the tunnel (its %d agents dial out to %v)", remote, TunnelAgents, m.ha.AgentURLs)
		if err := m.startAgents(ctx, m.ha, remote); err != nil {
			return fmt.Errorf("agent of %s: %w", remote, err)
		}
		return nil
	default:
		m.say("• joining cluster %s through the tunnel", remote)
		return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
			return len(m.Tunnel.Agents(remote)) > 0, nil
		})
	}
}

// direct reports whether remote joins with a kubeconfig Secret.
func (m *Mesh) direct(remote string) bool {
	return (m.ha == nil && m.Tunnel == nil) || slices.Contains(m.Options.DirectClusters, remote)
}

// KubeconfigSecret stores the admin kubeconfig of remote in the primary as
// <remote>-kubeconfig, for a RemoteIstio's kubeconfigSecretRef, and
// returns its name.
func (m *Mesh) KubeconfigSecret(ctx context.Context, remote string) (string, error) {
	rc := m.Cluster(remote)
	if rc == nil {
		return "", fmt.Errorf("no cluster %s in the mesh", remote)
	}
	return KubeconfigSecret(ctx, m.C[m.Primary().Name], m.Namespace(), rc)
}

// KubeconfigSecret stores the admin kubeconfig of cluster rc in namespace
// of the primary (c) as <name>-kubeconfig, and returns its name.
func KubeconfigSecret(ctx context.Context, c client.Client, namespace string, rc *localcluster.Cluster) (string, error) {
	kc, err := os.ReadFile(rc.Kubeconfig)
	if err != nil {
		return "", err
	}
	secret := install.KubeconfigSecret(namespace, rc.Name+"-kubeconfig", kc)
	if err := client.IgnoreAlreadyExists(c.Create(ctx, secret)); err != nil {
		return "", fmt.Errorf("creating Secret %s/%s: %w", namespace, secret.Name, err)
	}
	return secret.Name, nil
}

func (m *Mesh) wait(ctx context.Context, obj client.Object, cond string) error {
	ctx, cancel := context.WithTimeout(ctx, m.Options.WaitTimeout)
	defer cancel()
	return install.Wait(ctx, m.C[m.Primary().Name], obj, cond, m.Options.Progress)
}

// Stop stops every component Start started, the last started first. It
// may be called more than once; it returns the first error met (the
// operator's, istiod's, a process's).
func (m *Mesh) Stop() error {
	m.stopOnce.Do(func() { m.stopErr = m.stop() })
	return m.stopErr
}

func (m *Mesh) stop() error {
	var errs []error
	if m.Istiod != nil {
		errs = append(errs, m.Istiod.Stop())
	}
	for i := len(m.stops) - 1; i >= 0; i-- {
		m.stops[i]()
	}
	m.stops = nil
	if m.Operator != nil {
		errs = append(errs, m.Operator.Err())
		m.Operator.Close()
	}
	if len(m.Options.Clusters) == 0 {
		for i := len(m.Clusters) - 1; i >= 0; i-- {
			errs = append(errs, m.Clusters[i].Stop())
		}
		for _, e := range m.Etcds {
			errs = append(errs, e.Stop())
		}
	}
	return errors.Join(errs...)
}
