// Package pipeline wires the locality server from one Options value: the
// member clusters (given, or followed from the mesh by pkg/locality/members)
// → topology.Watcher → locality.Translate (with the policy: given, the
// Istio resource's failover order, measured RTT) → rulesync.Server writing
// the DestinationRules into the primary. `meshfleet locality`, the sandbox,
// the benchmarks and the tests all start the server through it, so there is
// one wiring to get right.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/members"
	"github.com/meshfleet/meshfleet/pkg/locality/rtt"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// Options configures a locality server. The members come from exactly one
// of Clusters and Mesh.
type Options struct {
	// Clusters are static member clusters by name; the rules are written
	// into PrimaryCluster's (the only one's, when there is one).
	Clusters       map[string]*rest.Config
	PrimaryCluster string
	// Mesh reaches the primary cluster whose Istio resource and
	// RemoteIstios name the members (followed as they change; the Istio
	// resource's spec.localityLB.failover is the explicit order). The
	// rules are written there. MeshOptions picks the resources and the
	// tunnel the remotes are reached through.
	Mesh        *rest.Config
	MeshOptions members.Options

	// Namespace of the primary that receives the rules (rulesync's default
	// if empty). Domain is the clusters' DNS domain ("cluster.local").
	Namespace, Domain string
	// Policy is the locality policy; with Mesh, the Istio resource's
	// failover order replaces Policy.Failover whenever it sets one.
	Policy locality.Policy
	// PolicySource, if set, is asked for the policy at every sync instead
	// (benchmarks that change it).
	PolicySource func() locality.Policy
	// TunnelMetrics is the tunnel server's /metrics URL: the round-trip
	// times it measures order failover regions (empty: none), read every
	// TunnelMetricsInterval (rtt.DefaultInterval if zero).
	TunnelMetrics         string
	TunnelMetricsInterval time.Duration

	// Writer settings, as in rulesync.Options.
	Debounce, MaxDebounce time.Duration
	HoldDown              time.Duration
	GroupMin              int
	Lease                 *rulesync.Lease
	Identity              string
	OnWrite               func(writes int, latency time.Duration)
	// AdjustMembers, if set, edits the member sync state the writer sees
	// (tests: a member that never syncs).
	AdjustMembers func(map[string]bool) map[string]bool

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Server is a wired locality server: its rulesync.Server (Notify, Sync,
// State, DebugHandler) and the watchers that feed it. Run starts them.
type Server struct {
	*rulesync.Server
	opts    Options
	log     *slog.Logger
	primary *rest.Config
	topo    atomic.Pointer[topology.Watcher]
	mesh    *members.Watcher
	poller  *rtt.Poller
	// start starts the topology watcher of static members.
	start func(ctx context.Context)
}

// New wires a locality server; nothing runs until Run.
func New(opts Options) (*Server, error) {
	fromMesh := opts.Mesh != nil
	if fromMesh == (len(opts.Clusters) > 0) {
		return nil, errors.New("locality server: the member clusters come either from a mesh (the primary that holds the Istio and RemoteIstio resources) or from a static list of clusters: give exactly one")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger, primary: opts.Mesh}
	if !fromMesh {
		if opts.PrimaryCluster == "" && len(opts.Clusters) == 1 {
			for name := range opts.Clusters {
				s.opts.PrimaryCluster = name
			}
		}
		if s.primary = opts.Clusters[s.opts.PrimaryCluster]; s.primary == nil {
			return nil, fmt.Errorf("locality server: primary cluster %q is not one of the member clusters (%s): name the cluster whose API server istiod reads, where the rules are written",
				s.opts.PrimaryCluster, strings.Join(slices.Sorted(maps.Keys(opts.Clusters)), ", "))
		}
	}

	// Stage 1, topology: members → topology.Topology. The watcher exists
	// once the members are known (at once for static members; from the
	// mesh, when the primary first answers).
	// The writer asks for what changed since its last sync
	// (Watcher.Changes), so a change of one Service is translated, grouped
	// and planned alone.
	changes := func() (*topology.Topology, topology.Delta) {
		if w := s.topo.Load(); w != nil {
			return w.Changes()
		}
		return &topology.Topology{}, topology.Delta{All: true}
	}
	var unreachable func() []string // members the mesh names but cannot reach
	memberState := func() map[string]bool {
		out := map[string]bool{}
		if w := s.topo.Load(); w != nil {
			out = w.Clusters()
		}
		if unreachable != nil {
			for _, name := range unreachable() {
				out[name] = false
			}
		}
		if opts.AdjustMembers != nil {
			out = opts.AdjustMembers(out)
		}
		return out
	}
	notify := func() {
		if s.Server != nil {
			s.Server.Notify()
		}
	}

	// Stage 2, translate: the policy, with the mesh's failover order and
	// measured RTT.
	policy := func() locality.Policy { return opts.Policy }
	if opts.PolicySource != nil {
		policy = opts.PolicySource
	}
	var tracker *rtt.Tracker
	if opts.TunnelMetrics != "" {
		s.poller = &rtt.Poller{URL: opts.TunnelMetrics, Interval: opts.TunnelMetricsInterval, Log: s.log}
		tracker = &rtt.Tracker{RTT: s.poller.RTTs, Notify: notify}
		s.poller.OnPoll = tracker.Check
		if s.opts.PrimaryCluster != "" {
			tracker.SetPrimary(s.opts.PrimaryCluster)
		}
	}
	watch := func(ctx context.Context, cfgs map[string]*rest.Config, configCluster string) (*topology.Watcher, error) {
		w, err := topology.NewWatcher(cfgs, topology.WatcherOptions{Domain: opts.Domain, Logger: s.log, OnChange: notify, ConfigCluster: configCluster})
		if err != nil {
			return nil, err
		}
		w.Start(ctx)
		s.topo.Store(w)
		notify()
		return w, nil
	}
	if fromMesh {
		follower := &members.Follower{Base: opts.Policy, Notify: notify, Log: s.log}
		if len(opts.Policy.Failover) > 0 {
			s.log.Info("the locality policy sets a failover order; the Istio resource's spec.localityLB.failover wins whenever it sets one")
		}
		if opts.PolicySource == nil {
			policy = follower.Policy
		}
		unreachable = follower.Unreachable
		var runCtx atomic.Pointer[context.Context]
		onMesh := func(m *members.Mesh) {
			primary := primaryMember(m)
			if tracker != nil && opts.PrimaryCluster == "" {
				tracker.SetPrimary(primary)
			}
			follower.OnChange(m)
			if s.topo.Load() == nil {
				w, err := watch(*runCtx.Load(), m.Configs(), primary)
				if err != nil {
					s.log.Error("cannot watch the member clusters; retrying on the next change of the mesh", "err", err)
					return
				}
				// From now on RemoteIstios added or removed change the clusters.
				follower.Attach(w)
			}
		}
		mw, err := members.NewWatcher(opts.Mesh, opts.MeshOptions, s.log, onMesh)
		if err != nil {
			return nil, fmt.Errorf("locality server: %w", err)
		}
		s.mesh = mw
		s.start = func(ctx context.Context) {
			runCtx.Store(&ctx)
			mw.Start(ctx)
		}
	} else {
		w, err := topology.NewWatcher(opts.Clusters, topology.WatcherOptions{Domain: opts.Domain, Logger: s.log, OnChange: notify, ConfigCluster: s.opts.PrimaryCluster})
		if err != nil {
			return nil, fmt.Errorf("locality server: %w", err)
		}
		s.topo.Store(w)
		s.start = func(ctx context.Context) {
			w.Start(ctx)
			notify()
		}
	}
	if tracker != nil {
		// Explicit order first, then measured RTT, then the default.
		changes, policy = tracker.Changes(changes), tracker.Policy(policy)
	}

	// Stage 3, write: rules → the primary's API server.
	srv, err := rulesync.New(rulesync.Options{
		Config: s.primary, Namespace: opts.Namespace,
		Changes: changes, Policy: policy, Members: memberState,
		Debounce: opts.Debounce, MaxDebounce: opts.MaxDebounce, HoldDown: opts.HoldDown, GroupMin: opts.GroupMin,
		Lease: opts.Lease, Identity: opts.Identity, OnWrite: opts.OnWrite,
		Logger: s.log, Registerer: opts.Registerer,
	})
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Primary is the config of the cluster the rules are written into.
func (s *Server) Primary() *rest.Config { return s.primary }

// Watcher is the topology watcher: from New with static members, nil
// until the mesh first answers with members from a mesh.
func (s *Server) Watcher() *topology.Watcher { return s.topo.Load() }

// Run starts the watchers and the writer and returns when ctx ends. It
// never fails because a member cluster is unreachable.
func (s *Server) Run(ctx context.Context) error {
	s.start(ctx)
	if s.poller != nil {
		go s.poller.Run(ctx)
	}
	return s.Server.Run(ctx)
}

// primaryMember returns the name of the mesh's primary cluster ("" if none).
func primaryMember(m *members.Mesh) string {
	for _, mb := range m.Members {
		if mb.Connection == members.ConnectionPrimary {
			return mb.Name
		}
	}
	return ""
}

// Mesh waits for and returns the members the mesh names, with members from
// a mesh (an error with static members).
func (s *Server) Mesh(ctx context.Context) (*members.Mesh, error) {
	if s.mesh == nil {
		return nil, errors.New("locality server: static member clusters, no mesh")
	}
	return s.mesh.Current(ctx)
}
