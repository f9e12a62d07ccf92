// Package sandbox brings up a local multi-cluster mesh on this machine, with
// no containers: a primary and remote kube-apiservers, each on an etcd of its
// own (package localcluster); meshfleet's CRDs; the operator, which installs
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
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/check"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/locality/pipeline"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
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

// Sandbox is a running environment.
type Sandbox struct {
	Dir string
	// Etcds are the clusters' etcds, by cluster name.
	Etcds    map[string]*localcluster.Etcd
	Clusters []*localcluster.Cluster
	// Istiod is the running istiod (nil with NoIstiod).
	Istiod *localistiod.Istiod
	// XDSAddr is where the locality server serves its debug view
	// (/debug/locality); istiod reads its rules from the primary's API.
	XDSAddr string
	// TunnelMetricsAddr serves the active tunnel server's /metrics ("" without
	// the tunnel).
	TunnelMetricsAddr string

	demo     *demo
	started  time.Time
	comps    components
	stops    []func()
	downOnce sync.Once
	downErr  error
}

// Primary is the cluster that runs the control plane.
func (s *Sandbox) Primary() *localcluster.Cluster { return s.Clusters[0] }

// Up starts the sandbox and returns once every cluster is Ready and istiod
// is serving. On error, whatever was started is stopped again.
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
	s = &Sandbox{Dir: opts.Dir, started: time.Now(), Etcds: map[string]*localcluster.Etcd{}}
	defer func() {
		if err != nil {
			_ = s.Down()
		}
	}()

	names := []string{"primary"}
	for i := 1; i <= opts.Remotes; i++ {
		names = append(names, fmt.Sprintf("remote-%d", i))
	}
	for _, n := range names {
		say("• starting etcd and kube-apiserver for cluster %s", n)
		if err := s.startCluster(ctx, bins, n, opts.AggregatedRoles, n == "primary"); err != nil {
			return s, fmt.Errorf("cluster %s: %w", n, err)
		}
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
	crds, err := install.CRDs()
	if err != nil {
		return s, err
	}
	if err := install.Apply(ctx, c, crds); err != nil {
		return s, err
	}

	ist := opts.Istio.DeepCopy()
	if err := install.Apply(ctx, c, append(crds[:0:0], install.Namespace(ist.Namespace))); err != nil {
		return s, err
	}
	var tun *sandboxTunnel
	if !opts.Direct && len(s.Clusters) > 1 {
		say("• starting the tunnel server (log: %s)", filepath.Join(opts.Dir, "tunnel.log"))
		tunnelCA, _, err := meshca.TunnelCA(ctx, c, time.Now())
		if err != nil {
			return s, fmt.Errorf("tunnel CA: %w", err)
		}
		if tun, err = s.startTunnel(ctx, tunnelCA, ist.Namespace); err != nil {
			return s, fmt.Errorf("tunnel: %w", err)
		}
		if err := s.serveTunnelMetrics(tun); err != nil {
			return s, fmt.Errorf("tunnel metrics: %w", err)
		}
	}

	say("• starting the operator (log: %s)", filepath.Join(opts.Dir, "operator.log"))
	logFile, err := os.Create(filepath.Join(opts.Dir, "operator.log"))
	if err != nil {
		return s, fmt.Errorf("operator log: %w", err)
	}
	opOpts := operator.Options{MetricsAddr: "127.0.0.1:0", HealthAddr: "0", RemoteResync: 30 * time.Second,
		Logger: logr.FromSlogHandler(slog.NewJSONHandler(logFile, nil))}
	if tun != nil {
		opOpts.Tunnel = tun.operatorTunnel()
	}
	if err := s.startOperator(cfg, opOpts); err != nil {
		return s, err
	}

	var xdsLn net.Listener
	if !opts.NoIstiod && ist.Spec.LocalityLB.Enabled {
		if xdsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return s, fmt.Errorf("locality server: %w", err)
		}
		s.XDSAddr = xdsLn.Addr().String()
	}
	say("• applying Istio %s/%s (version %s)", ist.Namespace, ist.Name, ist.Spec.Version)
	istObj, err := install.ToUnstructured(ist, ist.TypeMeta)
	if err != nil {
		return s, err
	}
	if err := install.Apply(ctx, c, append(crds[:0:0], install.Namespace(ist.Namespace), istObj)); err != nil {
		return s, err
	}
	if err := waitFor(ctx, c, ist, v1beta1.ConditionReady, opts.Progress); err != nil {
		return s, err
	}

	for _, rc := range s.Clusters[1:] {
		ri := &v1beta1.RemoteIstio{
			ObjectMeta: metav1.ObjectMeta{Name: rc.Name, Namespace: ist.Namespace},
			// Proxies of a remote would reach istiod through the primary's
			// east-west gateway; here istiod is a local process.
			Spec: v1beta1.RemoteIstioSpec{PilotAddress: "localhost"},
		}
		direct := tun == nil || slices.Contains(opts.DirectClusters, rc.Name)
		if direct {
			say("• joining cluster %s directly", rc.Name)
			kc, err := os.ReadFile(rc.Kubeconfig)
			if err != nil {
				return s, err
			}
			secret := install.KubeconfigSecret(ist.Namespace, rc.Name+"-kubeconfig", kc)
			if err := client.IgnoreAlreadyExists(c.Create(ctx, secret)); err != nil {
				return s, err
			}
			ri.Spec.KubeconfigSecretRef = &corev1.LocalObjectReference{Name: secret.Name}
		}
		if err := client.IgnoreAlreadyExists(c.Create(ctx, ri)); err != nil {
			return s, err
		}
		if !direct {
			// The tunnel server accepts a cluster's agents once its
			// RemoteIstio exists.
			say("• joining cluster %s through the tunnel (its %d agents dial out to %v)", rc.Name, TunnelAgents, tun.AgentURLs)
			if err := s.startAgents(ctx, tun, rc.Name); err != nil {
				return s, fmt.Errorf("agent of %s: %w", rc.Name, err)
			}
		}
	}
	for _, rc := range s.Clusters[1:] {
		ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: rc.Name, Namespace: ist.Namespace}}
		if err := waitFor(ctx, c, ri, v1beta1.ConditionReady, opts.Progress); err != nil {
			return s, err
		}
	}
	if opts.NoIstiod {
		return s, s.writeEndpoints()
	}

	if xdsLn != nil {
		say("• starting the locality server (debug: http://%s/debug/locality)", s.XDSAddr)
		if err := s.addLocality(ctx, xdsLn, ist.Namespace, filepath.Join(opts.Dir, "locality.log")); err != nil {
			return s, err
		}
	}
	var istiodEnv []string
	if tun != nil {
		// istiod reads the tunnelled remotes with its own token, from the file
		// the remote secrets name, as its pod would.
		if err := writeIstiodToken(ctx, s, tun, ist.Namespace); err != nil {
			return s, err
		}
		istiodEnv = append(istiodEnv, "PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS=tokenFile")
	}
	istiodEnv = append(istiodEnv, opts.IstiodEnv...)
	say("• starting istiod (log: %s)", filepath.Join(opts.Dir, "istiod", "istiod.log"))
	mesh := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ist.Namespace, Name: "istio"}, mesh); err != nil {
		return s, fmt.Errorf("reading the MeshConfig the operator rendered: %w", err)
	}
	if s.Istiod, err = localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: s.Primary().Kubeconfig,
		Dir:        filepath.Join(opts.Dir, "istiod"),
		MeshConfig: mesh.Data["mesh"],
		ClusterID:  ist.Spec.ClusterName,
		Namespace:  ist.Namespace,
		Env:        istiodEnv,
	}); err != nil {
		return s, err
	}
	s.comps.add(&component{name: ComponentIstiod, kill: s.Istiod.Kill, start: s.Istiod.Restart,
		detail: func() string { return "xDS " + s.Istiod.GRPCAddr }})
	if err := s.writeEndpoints(); err != nil {
		return s, err
	}
	if opts.NoDemo {
		return s, nil
	}
	say("• starting the demo: gRPC servers in %d zones, proxyless clients calling demo.demo.svc.cluster.local", len(Addrs()))
	if s.demo, err = startDemo(ctx, s, s.Istiod.GRPCAddr); err != nil {
		return s, fmt.Errorf("demo: %w", err)
	}
	return s, nil
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

// serveTunnelMetrics serves the active tunnel server's metrics on
// TunnelMetricsAddr until Down.
func (s *Sandbox) serveTunnelMetrics(t *sandboxTunnel) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.TunnelMetricsAddr = ln.Addr().String()
	hs := &http.Server{Handler: t.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	s.stops = append(s.stops, func() { _ = hs.Close() })
	return nil
}

// startLocality runs the locality server over every cluster of the sandbox
// until ctx ends: it writes its rules into the primary's namespace, where
// istiod reads them, and serves its debug view on ln. It is the one place
// that says how the sandbox runs it.
func (s *Sandbox) startLocality(ctx context.Context, ln net.Listener, namespace, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { _ = f.Close() })
	context.AfterFunc(ctx, func() { _ = f.Close() })
	log := slog.New(slog.NewJSONHandler(f, nil))
	cfgs := map[string]*rest.Config{}
	for _, c := range s.Clusters {
		cfgs[c.Name] = c.Config
	}
	srv, err := pipeline.New(pipeline.Options{Clusters: cfgs, PrimaryCluster: s.Primary().Name, Namespace: namespace,
		Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	go func() { _ = srv.Run(ctx) }()
	hs := &http.Server{Handler: srv.DebugHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = hs.Close() }()
	go func() { _ = hs.Serve(ln) }()
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
	var first error
	if s.Istiod != nil {
		if err := s.Istiod.Stop(); err != nil {
			first = err
		}
	}
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
	for i := len(s.Clusters) - 1; i >= 0; i-- {
		if err := s.Clusters[i].Stop(); err != nil && first == nil {
			first = err
		}
	}
	for _, e := range s.Etcds {
		if err := e.Stop(); err != nil && first == nil {
			first = err
		}
	}
	_ = os.Remove(filepath.Join(s.Dir, SocketName))
	return first
}

func waitFor(ctx context.Context, c client.Client, obj client.Object, cond string, progress io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	return install.Wait(ctx, c, obj, cond, progress)
}
