package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// Defaults for Options.
const (
	DefaultDebounce    = 20 * time.Millisecond
	DefaultMaxDebounce = 250 * time.Millisecond
	DefaultNACKBackoff = 5 * time.Second
)

// Options configures a Server.
type Options struct {
	// Snapshot returns the current topology (required). It is called after
	// each debounced burst of Notify calls.
	Snapshot func() *topology.Topology
	// Policy returns the current mesh-wide policy; the zero Policy if nil.
	// It is read at each translation, so measured RTTs can change.
	Policy func() locality.Policy
	// Debounce is the quiet period that ends a burst of changes;
	// MaxDebounce bounds how long a continuous burst delays a push.
	Debounce, MaxDebounce time.Duration
	// NACKBackoff is how long a NACKed type waits before it is sent again.
	NACKBackoff time.Duration
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
	// OnPush, if set, is called when a DestinationRule version has been
	// written to an istiod's stream, and OnAck when istiod acknowledges one
	// (it has stored the rules), each with the time since the change behind
	// it was first seen.
	OnPush, OnAck func(version string, latency time.Duration)
}

// Server serves generated DestinationRules to istiod over MCP-over-xDS.
type Server struct {
	opts    Options
	log     *slog.Logger
	cache   *mcpCache
	metrics *metrics
	notify  chan time.Time

	mu      sync.Mutex
	last    *locality.Result
	lastErr error
	version string
	sent    map[int64]map[string]sentResponse // stream → type → last response
	nodes   map[int64]string
}

type sentResponse struct{ nonce, version string }

// NewServer returns a Server; call Run to serve.
func NewServer(opts Options) (*Server, error) {
	if opts.Snapshot == nil {
		return nil, errors.New("xds: Options.Snapshot is required")
	}
	if opts.Policy == nil {
		opts.Policy = func() locality.Policy { return locality.Policy{} }
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxDebounce < opts.Debounce {
		opts.MaxDebounce = max(DefaultMaxDebounce, opts.Debounce)
	}
	if opts.NACKBackoff <= 0 {
		opts.NACKBackoff = DefaultNACKBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{
		opts:    opts,
		log:     opts.Logger,
		cache:   newMCPCache(opts.NACKBackoff),
		metrics: newMetrics(opts.Registerer),
		notify:  make(chan time.Time, 1),
		sent:    map[int64]map[string]sentResponse{},
		nodes:   map[int64]string{},
	}, nil
}

// Notify tells the server the topology changed. It never blocks; bursts
// are coalesced (the consumer reads the latest state, not every event).
func (s *Server) Notify() {
	select {
	case s.notify <- time.Now():
	default: // a change is already pending; its (earlier) time is kept
	}
}

// Run serves ADS on l until ctx ends, translating the topology once at
// start and after each debounced burst of changes.
func (s *Server) Run(ctx context.Context, l net.Listener) error {
	if err := s.Sync(time.Now()); err != nil {
		s.log.Error("initial translation failed", "err", err)
	}
	gs := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1000),
	)
	ads := serverv3.NewServer(ctx, s.cache, s.callbacks())
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, ads)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	go s.debounceLoop(ctx)
	select {
	case <-ctx.Done():
		gs.Stop()
		return nil
	case err := <-errc:
		return fmt.Errorf("serving ADS on %s: %w", l.Addr(), err)
	}
}

// debounceLoop pushes a change that follows a quiet period (no change for
// Debounce) at once: a single change, such as a node relabelled or a zone's
// endpoints going not ready, is not delayed. Changes that follow it within
// Debounce are a burst: they are coalesced and pushed once Debounce passes
// without another (at most MaxDebounce after the first of them).
func (s *Server) debounceLoop(ctx context.Context) {
	var last time.Time // when the previous change was seen
	for {
		var first time.Time
		select {
		case <-ctx.Done():
			return
		case first = <-s.notify:
		}
		quietBefore := first.Sub(last) >= s.opts.Debounce
		last = first
		if !quietBefore && !s.waitQuiet(ctx, first, &last) {
			return
		}
		if err := s.Sync(first); err != nil {
			s.log.Error("translation failed; istiod keeps the last good DestinationRules", "err", err)
		}
	}
}

// waitQuiet waits until Debounce passes without a change, or MaxDebounce
// after first; last is updated with each change seen. It returns false if
// ctx ended.
func (s *Server) waitQuiet(ctx context.Context, first time.Time, last *time.Time) bool {
	quiet := time.NewTimer(s.opts.Debounce)
	defer quiet.Stop()
	deadline := time.NewTimer(time.Until(first.Add(s.opts.MaxDebounce)))
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case *last = <-s.notify:
			quiet.Reset(s.opts.Debounce)
		case <-quiet.C:
			return true
		case <-deadline.C:
			return true
		}
	}
}

// Sync translates the current topology now and pushes what changed;
// changedAt is when the change was first seen (for the latency metrics).
func (s *Server) Sync(changedAt time.Time) error {
	start := time.Now()
	res, err := locality.Translate(s.opts.Snapshot(), s.opts.Policy())
	s.metrics.translate.Observe(time.Since(start).Seconds())
	if err != nil {
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		return err
	}
	changed, version, err := s.cache.update(res.Rules(), changedAt)
	s.mu.Lock()
	s.last, s.lastErr, s.version = res, err, version
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.metrics.resources.Set(float64(s.cache.size()))
	if len(changed) > 0 {
		s.metrics.changes.Add(float64(len(changed)))
		s.log.Info("DestinationRules changed", "version", version, "changed", len(changed), "total", s.cache.size(), "translate", time.Since(start))
	}
	for _, d := range res.Decisions {
		for _, w := range d.Warnings {
			s.log.Warn(w)
		}
	}
	return nil
}

// callbacks track streams, pushes, ACKs and NACKs.
func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			s.metrics.connected.Inc()
			s.mu.Lock()
			s.sent[id] = map[string]sentResponse{}
			s.mu.Unlock()
			return nil
		},
		StreamClosedFunc: func(id int64, node *core.Node) {
			s.metrics.connected.Dec()
			s.mu.Lock()
			delete(s.sent, id)
			delete(s.nodes, id)
			s.mu.Unlock()
			s.log.Info("istiod disconnected", "stream", id, "node", node.GetId())
		},
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			s.mu.Lock()
			if _, ok := s.nodes[id]; !ok && req.GetNode() != nil {
				s.nodes[id] = req.GetNode().GetId()
				s.log.Info("istiod connected", "stream", id, "node", req.GetNode().GetId())
			}
			last, ok := s.sent[id][req.TypeUrl]
			s.mu.Unlock()
			if !ok || req.ResponseNonce != last.nonce {
				return nil
			}
			if req.ErrorDetail != nil {
				s.metrics.nacks.WithLabelValues(req.TypeUrl).Inc()
				s.log.Warn("istiod rejected a response; re-sending after the NACK backoff", "stream", id, "type", req.TypeUrl, "version", last.version, "error", req.ErrorDetail.GetMessage(), "backoff", s.opts.NACKBackoff)
				return nil
			}
			if IsDestinationRuleType(req.TypeUrl) {
				if at, ok := s.cache.changeTime(last.version); ok {
					lat := time.Since(at)
					s.metrics.ackLatency.Observe(lat.Seconds())
					if s.opts.OnAck != nil {
						s.opts.OnAck(last.version, lat)
					}
				}
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			s.metrics.pushes.WithLabelValues(resp.TypeUrl).Inc()
			if IsDestinationRuleType(resp.TypeUrl) {
				if at, ok := s.cache.changeTime(resp.VersionInfo); ok {
					lat := time.Since(at)
					s.metrics.pushLatency.Observe(lat.Seconds())
					if s.opts.OnPush != nil {
						s.opts.OnPush(resp.VersionInfo, lat)
					}
				}
			}
			s.mu.Lock()
			if m := s.sent[id]; m != nil {
				m[resp.TypeUrl] = sentResponse{nonce: resp.Nonce, version: resp.VersionInfo}
			}
			s.mu.Unlock()
		},
	}
}
