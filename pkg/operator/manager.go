package operator

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/operator/istio"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshingress"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/version"
)

// Options configure the operator.
type Options struct {
	// MetricsAddr serves Prometheus metrics ("0" disables).
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz ("0" disables).
	HealthAddr string
	// LeaderElection makes one of several replicas active at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease (default: the in-cluster namespace).
	LeaderElectionNamespace string
	// Resync is how often a Ready control plane is checked again. Default 5m.
	Resync time.Duration
	// RemoteResync is how often a remote cluster is checked again for drift
	// (remote objects are not watched). Default 1m.
	RemoteResync time.Duration
	// Tunnel, when set, reaches remote clusters without a kubeconfig Secret
	// through the tunnel server.
	Tunnel *remoteistio.Tunnel
	// TunnelServerHosts, when set, makes the operator keep the tunnel
	// server's certificate for these names in
	// meshfleet-system/meshfleet-tunnel-server-tls, from the tunnel CA.
	TunnelServerHosts []string
	// LocalityImage runs the locality server (meshfleet locality) of an
	// Istio resource with spec.localityLB.enabled; Image if empty.
	LocalityImage string
	// Image is meshfleet's image, the operator's own version: the locality
	// server, the tunnel server and the tunnel agents run it, and agents
	// running another image are updated to it through the tunnel. Empty:
	// version.Image(), and agents are left as they are.
	Image string
	// TunnelServer, when set with TunnelServerHosts, makes the operator run
	// the tunnel server in meshfleet-system (two replicas and a Lease) with
	// the certificate it keeps, as part of each Istio resource's control
	// plane.
	TunnelServer *render.TunnelServer
	// AgentCertTTL and ServerCertTTL are the lifetimes of the agents' and
	// the tunnel server's certificates (meshca.AgentCertTTL,
	// meshca.ServerCertTTL if zero); each is renewed when a third is left.
	// At least MinCertTTL.
	AgentCertTTL, ServerCertTTL time.Duration
	// IstiodDebugAddresses maps an istiod revision to the host:port of its
	// monitoring port, for istiod run as a local process; other revisions
	// are reached through their Service's endpoints on port 15014. The
	// fleet rollout's xDS gate reads their sync state (decision 60).
	IstiodDebugAddresses map[string]string
	// IstiodTokenFile, when set, holds the token (audience istio-ca) the
	// operator shows istiod's debug endpoints.
	IstiodTokenFile string
	// Logger is the operator's log: its controllers' and the manager's.
	// Zero: controller-runtime's global logger (ctrl.SetLogger).
	Logger logr.Logger
}

// MinCertTTL is the shortest certificate lifetime the operator accepts:
// renewal at two thirds must leave time for the write and the reload
// (tests use it; production flags ask for hours).
const MinCertTTL = time.Minute

// image is the one place the operator decides which meshfleet image its
// components run.
func (o Options) image() string {
	if o.Image != "" {
		return o.Image
	}
	return version.Image()
}

// validate refuses settings the operator cannot work with.
func (o Options) validate() error {
	for _, d := range []struct {
		name string
		ttl  time.Duration
	}{{"agent certificate lifetime", o.AgentCertTTL}, {"tunnel server certificate lifetime", o.ServerCertTTL}} {
		if d.ttl != 0 && d.ttl < MinCertTTL {
			return fmt.Errorf("%s %v is shorter than %v: renewal a third before expiry would not leave time to write and reload it", d.name, d.ttl, MinCertTTL)
		}
	}
	if o.TunnelServer != nil && len(o.TunnelServerHosts) == 0 {
		return fmt.Errorf("running the tunnel server needs the names its certificate is for (TunnelServerHosts), e.g. meshfleet-tunnel.meshfleet-system.svc and the host agents dial")
	}
	return nil
}

// Scheme returns the scheme with every type the operator reads typed.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1beta1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	return s, nil
}

// New builds the operator's manager with its controllers registered.
func New(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	if err := RegisterMetrics(ctrlmetrics.Registry); err != nil {
		return nil, err
	}
	if opts.Resync == 0 {
		opts.Resync = 5 * time.Minute
	}
	if opts.RemoteResync == 0 {
		opts.RemoteResync = time.Minute
	}
	managed := labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedByValue})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 opts.Logger,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress: opts.HealthAddr,
		// Controller names are unique within a manager; several managers in
		// one process (tests, the sandbox's benchmark) may reuse them.
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		LeaderElection:          opts.LeaderElection,
		LeaderElectionID:        "meshfleet-operator",
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		Cache: cache.Options{
			// Cache only what meshfleet manages: a cluster's Secrets and
			// ConfigMaps stay out of the operator's memory.
			DefaultLabelSelector: managed,
			ByObject: map[client.Object]cache.ByObject{
				&v1beta1.Istio{}:       {Label: labels.Everything()},
				&v1beta1.RemoteIstio{}: {Label: labels.Everything()},
				&v1beta1.MeshIngress{}: {Label: labels.Everything()},
			},
		},
		Client: client.Options{Cache: &client.CacheOptions{Unstructured: true}},
		NewClient: func(cfg *rest.Config, o client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, o)
			if err != nil {
				return nil, err
			}
			return countWrites(c, o.Scheme)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	r := &istio.Reconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Discovery:   disco,
		Events:      mgr.GetEventRecorder("meshfleet-operator"),
		Resync:      opts.Resync,
		IstiodDebug: istio.IstiodDebug{Addresses: opts.IstiodDebugAddresses, TokenFile: opts.IstiodTokenFile},
	}
	r.LocalityServer.Image = opts.LocalityImage
	if r.LocalityServer.Image == "" {
		r.LocalityServer.Image = opts.image()
	}
	if opts.TunnelServer != nil {
		ts := *opts.TunnelServer
		ts.Image = opts.image()
		r.TunnelServer = &ts
	}
	if opts.Tunnel != nil {
		r.LocalityServer.TunnelURL, r.LocalityServer.TunnelCA = opts.Tunnel.URL, opts.Tunnel.CAData
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up Istio controller: %w", err)
	}
	rr := &remoteistio.Reconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Scheme:        scheme,
		PrimaryConfig: cfg,
		Tunnel:        opts.Tunnel,
		Events:        mgr.GetEventRecorder("meshfleet-operator"),
		Resync:        opts.RemoteResync,
		AgentCertTTL:  opts.AgentCertTTL,
		AgentImage:    opts.Image,
	}
	if err := rr.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up RemoteIstio controller: %w", err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	if err := (&meshingress.Reconciler{Client: mgr.GetClient(), Direct: direct, Resync: opts.Resync}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up MeshIngress controller: %w", err)
	}
	if len(opts.TunnelServerHosts) > 0 {
		if err := mgr.Add(&meshca.ServerCertKeeper{Client: mgr.GetClient(), Hosts: opts.TunnelServerHosts, Resync: opts.Resync, TTL: opts.ServerCertTTL,
			FieldManager: apply.OperatorFieldManager, Log: mgr.GetLogger().WithName("tunnel-server-cert")}); err != nil {
			return nil, fmt.Errorf("set up the tunnel server certificate: %w", err)
		}
	}
	if err := mgr.Add(memberReadiness(mgr.GetCache())); err != nil {
		return nil, fmt.Errorf("set up the member readiness gauge: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("cache not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Run runs the operator until ctx is done.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	mgr, err := New(cfg, opts)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
