// Package sandbox brings up a local multi-cluster mesh on this machine, with
// no containers, through internal/localmesh (the bring-up the tests share),
// and adds the demo app and the control socket: a primary and remote
// kube-apiservers, each on an etcd of its own; meshfleet's CRDs; the operator, which installs
// the control plane in the primary and joins the remotes; two tunnel servers
// (one active through a Lease) and two agents per remote; the locality
// server; and a real istiod process that discovers all clusters and reads the
// locality server's DestinationRules. It is what `meshctl sandbox up` and
// `make sandbox` run.
//
// Every component can be killed (as a crash would end it) and restarted
// (Sandbox.Kill, Sandbox.Restart, `meshctl sandbox kill|restart`), so that
// a person, or the chaos suite (tests/chaos), can watch the traffic hold.
//
// Nothing runs pods here: istiod runs as a local process in place of the
// Deployment the operator renders, and the sandbox reports that Deployment
// (and the gateways') as rolled out, as the deployment controller would.
package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/internal/localmesh"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/check"
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
	// NoIstiod skips the istiod process (and the locality server and demo).
	NoIstiod bool
	// Direct joins the remotes with kubeconfig Secrets instead of through
	// the tunnel.
	Direct bool
	// DirectClusters are remotes (remote-1, remote-2, …) joined with
	// kubeconfig Secrets although the others go through the tunnel.
	DirectClusters []string
	// NoDemo skips the demo app (its servers need the sandbox's network
	// namespace for their 198.18.0.0/15 addresses).
	NoDemo bool
	// AggregatedRoles runs kube-controller-manager's clusterrole-aggregation
	// controller for every cluster, so that view, edit and admin have
	// rules (Kiali's remote access is bound to view).
	AggregatedRoles bool
	// IstiodEnv is added to istiod's environment (tests set
	// ENABLE_DEBUG_ENDPOINT_AUTH=false for istioctl's xDS debug requests).
	IstiodEnv []string
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

// Sandbox is a running environment: the mesh (localmesh) and the demo.
type Sandbox struct {
	*localmesh.Mesh

	demo     *demo
	started  time.Time
	stops    []func()
	downOnce sync.Once
	downErr  error
}

// Component names, and what `meshctl sandbox status` lists of each.
const (
	ComponentLocality     = localmesh.ComponentLocality
	ComponentIstiod       = localmesh.ComponentIstiod
	ComponentOperator     = localmesh.ComponentOperator
	ComponentTunnelServer = localmesh.ComponentTunnelServer
	ComponentAgent        = localmesh.ComponentAgent
	ComponentAPIServer    = localmesh.ComponentAPIServer
	ComponentEtcd         = localmesh.ComponentEtcd
	// TunnelServers and TunnelAgents are how many tunnel servers the
	// sandbox runs and how many agents each remote runs.
	TunnelServers = localmesh.TunnelServers
	TunnelAgents  = localmesh.TunnelAgents
)

// Component is one process (or in-process server) of the sandbox.
type Component = localmesh.Component

// Up starts the sandbox and returns once every cluster is Ready and istiod
// is serving. On error, whatever was started is stopped again.
func Up(ctx context.Context, opts Options) (s *Sandbox, err error) {
	if opts.Istio == nil {
		opts.Istio = DefaultIstio()
	}
	remotes := make([]string, opts.Remotes)
	for i := range remotes {
		remotes[i] = fmt.Sprintf("remote-%d", i+1)
	}
	conn := localmesh.Tunnel
	if opts.Direct {
		conn = localmesh.Direct
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox dir: %w", err)
	}
	started := time.Now()
	m, err := localmesh.Start(ctx, localmesh.Options{
		Dir: opts.Dir, Remotes: remotes, AggregatedRoles: opts.AggregatedRoles, FakeNodes: true,
		Istio: opts.Istio, Connection: conn, HATunnel: true, DirectClusters: opts.DirectClusters,
		Operator: operator.Options{MetricsAddr: "127.0.0.1:0", HealthAddr: "0", RemoteResync: 30 * time.Second},
		// Proxies of a remote would reach istiod through the primary's
		// east-west gateway; here istiod is a local process.
		RemoteIstio: v1beta1.RemoteIstioSpec{PilotAddress: "localhost"},
		JoinRemotes: true, Istiod: !opts.NoIstiod, IstiodEnv: opts.IstiodEnv, Locality: true,
		Progress: opts.Progress,
	})
	s = &Sandbox{Mesh: m, started: started}
	if err != nil {
		_ = s.Down()
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Down()
		}
	}()
	if err := s.writeEndpoints(); err != nil {
		return s, err
	}
	if opts.NoIstiod || opts.NoDemo {
		return s, nil
	}
	s.say("• starting the demo: gRPC servers in %d zones, proxyless clients calling demo.demo.svc.cluster.local", len(Addrs()))
	if s.demo, err = startDemo(ctx, s, s.Istiod.GRPCAddr); err != nil {
		return s, fmt.Errorf("demo: %w", err)
	}
	return s, nil
}

func (s *Sandbox) say(format string, args ...any) {
	if p := s.Options.Progress; p != nil {
		fmt.Fprintf(p, format+"\n", args...)
	}
}

// Endpoints are the sandbox's components' HTTP addresses, as meshctl reaches
// them: istiod's debug endpoints (on its HTTP address, where local callers
// need no authentication), the active tunnel server's metrics and the
// locality server's debug view.
func (s *Sandbox) Endpoints() check.Endpoints {
	var e check.Endpoints
	if s.Istiod != nil {
		e.IstiodDebug = "http://" + s.Istiod.HTTPAddr
	}
	if s.TunnelMetricsAddr != "" {
		e.TunnelMetrics = "http://" + s.TunnelMetricsAddr + "/metrics"
	}
	if s.XDSAddr != "" {
		e.LocalityDebug = "http://" + s.XDSAddr
	}
	return e
}

// writeEndpoints records Endpoints in the primary's kubeconfig, so that
// meshctl check, status and locality given that kubeconfig find the
// components without flags.
func (s *Sandbox) writeEndpoints() error {
	if err := check.WriteEndpoints(s.Primary().Kubeconfig, s.Endpoints()); err != nil {
		return fmt.Errorf("recording the components' addresses in the kubeconfig: %w", err)
	}
	return nil
}

// goRun runs f until Down.
func (s *Sandbox) goRun(f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f(ctx); close(done) }()
	s.stops = append(s.stops, func() { cancel(); <-done })
}

// Down stops every process of the sandbox. It may be called more than once.
func (s *Sandbox) Down() error {
	s.downOnce.Do(func() { s.downErr = s.down() })
	return s.downErr
}

func (s *Sandbox) down() error {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
	var err error
	if s.Mesh != nil {
		err = s.Mesh.Stop()
		_ = os.Remove(filepath.Join(s.Dir, SocketName))
	}
	return err
}
