package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
)

// Defaults for ServerOptions and AgentOptions.
const (
	DefaultPingInterval = 5 * time.Second
	// DefaultStreamWindow bounds the data buffered for one stream at the
	// receiving end; it is also the most a stream may have in flight, so it
	// caps one stream's throughput at window/RTT.
	DefaultStreamWindow = 4 << 20
	// DefaultMaxStreamsPerAgent bounds the requests open at once on one
	// agent's session (watches count for as long as they are open).
	DefaultMaxStreamsPerAgent = 2048
	// DefaultMaxAgentsPerCluster bounds the sessions of one cluster.
	DefaultMaxAgentsPerCluster = 16
	// DefaultTokenReviewRate and DefaultTokenReviewBurst bound the
	// TokenReviews of tokens not in the cache, per second.
	DefaultTokenReviewRate  = 20
	DefaultTokenReviewBurst = 40
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// ServingCertificate is presented to agents and to API callers.
	ServingCertificate *KeyPair
	// AgentCAs are the roots agent certificates must chain to. Required.
	AgentCAs *CABundle
	// ClientCAs, when set, authenticate callers by TLS client certificate
	// (CN is the user, O the groups), as kube-apiserver's --client-ca-file.
	ClientCAs *CABundle
	// TokenReviews, when set, authenticates callers' bearer tokens with a
	// TokenReview, normally against the primary cluster.
	TokenReviews authnv1client.TokenReviewInterface
	// TokenAudiences are the audiences a caller's token must be valid for;
	// [TokenAudience] if empty. Tokens for the API server's own audience
	// are refused.
	TokenAudiences []string
	// TokenReviewRate and TokenReviewBurst bound the TokenReviews sent for
	// tokens not in the cache (token bucket; callers beyond it get 429);
	// DefaultTokenReviewRate and DefaultTokenReviewBurst if zero.
	TokenReviewRate  float64
	TokenReviewBurst int
	// Access decides which authenticated callers may use the tunnel, and
	// the prefix they are impersonated under; DefaultAccessPolicy of the
	// default namespaces if nil.
	Access *AccessPolicy
	// Clusters are the clusters whose agents are accepted (normally
	// RemoteIstioClusters). Required.
	Clusters *ClusterSet
	// MaxStreamsPerAgent and MaxAgentsPerCluster bound one agent's open
	// requests and one cluster's sessions; DefaultMaxStreamsPerAgent and
	// DefaultMaxAgentsPerCluster if zero.
	MaxStreamsPerAgent  int
	MaxAgentsPerCluster int
	// Lease, when set, makes this server active only while it holds the
	// Lease; without it the server is always active.
	Lease *LeaseOptions
	// PingInterval is how often the RTT to each agent is measured;
	// DefaultPingInterval if zero.
	PingInterval time.Duration
	// StreamWindow is the per-stream flow-control window in bytes;
	// DefaultStreamWindow if zero.
	StreamWindow uint32
	// Logger receives the audit lines and events; slog.Default() if nil.
	Logger *slog.Logger
	// Registerer receives the server's metrics; a private registry if nil.
	Registerer prometheus.Registerer
	// DrainTimeout bounds how long a stopping server lets the requests in
	// flight finish before it closes the agents' sessions;
	// DefaultDrainTimeout if zero.
	DrainTimeout time.Duration
}

// Server accepts agents and proxies API requests to their clusters.
type Server struct {
	opts    ServerOptions
	log     *slog.Logger
	metrics *serverMetrics
	agents  *registry
	auth    *authenticator
	access  AccessPolicy
	proxy   *httputil.ReverseProxy
	// auditLog caches the audit line's per-caller loggers.
	auditLog auditLoggers
	// transport takes a request to an agent of its cluster.
	transport *clusterTransport
	active    atomic.Bool
	// activeSince is when the server last became active (Unix nanoseconds).
	activeSince atomic.Int64
	// requests counts the requests to clusters in flight that end by
	// themselves (not watches).
	requests inflight
}

// agentGrace is how long after becoming active a server answers "no agent"
// as a hand-over (503 with Retry-After, which client-go retries) rather
// than an outage: the agents of the server that stopped are reconnecting.
const agentGrace = 15 * time.Second

// NewServer checks opts and returns a server that is not yet serving.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.AgentCAs == nil {
		return nil, errors.New("tunnel server: no agent CA given; pass the CA bundle that agent certificates chain to")
	}
	if opts.ServingCertificate == nil {
		return nil, errors.New("tunnel server: no serving certificate given")
	}
	if _, err := opts.ServingCertificate.Certificate(); err != nil {
		return nil, fmt.Errorf("tunnel server: serving certificate: %w", err)
	}
	if opts.ClientCAs == nil && opts.TokenReviews == nil {
		return nil, errors.New("tunnel server: no way to authenticate callers; give a client CA, TokenReviews, or both")
	}
	if opts.Clusters == nil {
		return nil, errors.New("tunnel server: no cluster set; watch the primary's RemoteIstios (RemoteIstioClusters) or give a fixed list (NewClusterSet)")
	}
	access := DefaultAccessPolicy(DefaultIstioNamespace, DefaultMeshfleetNamespace)
	if opts.Access != nil {
		access = *opts.Access
		if access.Prefix == "" {
			access.Prefix = mapping.DefaultPrefix
		}
	}
	if err := access.Validate(); err != nil {
		return nil, fmt.Errorf("tunnel server: %w", err)
	}
	if len(opts.TokenAudiences) == 0 {
		opts.TokenAudiences = []string{TokenAudience}
	}
	if opts.TokenReviewRate <= 0 {
		opts.TokenReviewRate = DefaultTokenReviewRate
	}
	if opts.TokenReviewBurst <= 0 {
		opts.TokenReviewBurst = DefaultTokenReviewBurst
	}
	if opts.MaxStreamsPerAgent <= 0 {
		opts.MaxStreamsPerAgent = DefaultMaxStreamsPerAgent
	}
	if opts.MaxAgentsPerCluster <= 0 {
		opts.MaxAgentsPerCluster = DefaultMaxAgentsPerCluster
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.StreamWindow == 0 {
		opts.StreamWindow = DefaultStreamWindow
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Lease != nil {
		if err := opts.Lease.validate(); err != nil {
			return nil, fmt.Errorf("tunnel server: %w", err)
		}
	}
	m, err := newServerMetrics(opts.Registerer, opts.Clusters)
	if err != nil {
		return nil, fmt.Errorf("tunnel server: register metrics: %w", err)
	}
	certs := map[string]func() (time.Time, bool){
		"serving":  opts.ServingCertificate.notAfter,
		"agent-ca": opts.AgentCAs.notAfter,
	}
	if opts.ClientCAs != nil {
		certs["client-ca"] = opts.ClientCAs.notAfter
	}
	if err := registerCertificateExpiry(opts.Registerer, "meshfleet_tunnel_server_certificate_expiry_timestamp_seconds", nil, certs); err != nil {
		return nil, fmt.Errorf("tunnel server: register metrics: %w", err)
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: m,
		agents:  newRegistry(),
		access:  access,
		auth: &authenticator{
			clientCerts: opts.ClientCAs != nil,
			reviews:     opts.TokenReviews,
			audiences:   opts.TokenAudiences,
			cache:       newTokenCache(4096, 10*time.Second, 2*time.Second),
			timeout:     10 * time.Second,
			limiter:     rate.NewLimiter(rate.Limit(opts.TokenReviewRate), opts.TokenReviewBurst),
		},
	}
	s.transport = &clusterTransport{agents: s.agents}
	s.proxy = s.newReverseProxy()
	opts.Clusters.notify(s.disconnectClusters)
	return s, nil
}

// disconnectClusters closes the sessions of clusters that left the cluster
// set (their RemoteIstio was deleted).
func (s *Server) disconnectClusters(removed []string) {
	for _, c := range removed {
		for _, sess := range s.agents.sessions(c) {
			s.log.Info("closing the session of an agent whose cluster left the mesh", "cluster", c, "agent", sess.id)
			s.metrics.agentRevocations.Inc()
			sess.close()
		}
	}
}

// Run listens on apiAddr (callers) and agentAddr (agents) and serves until
// ctx is done or, with a Lease, until the lease is lost.
func (s *Server) Run(ctx context.Context, apiAddr, agentAddr string) error {
	apiLn, err := net.Listen("tcp", apiAddr)
	if err != nil {
		return fmt.Errorf("tunnel server: listen for API callers on %s: %w", apiAddr, err)
	}
	agentLn, err := net.Listen("tcp", agentAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("tunnel server: listen for agents on %s: %w", agentAddr, err)
	}
	return s.Serve(ctx, apiLn, agentLn)
}

// Serve serves API callers on apiLn and agents on agentLn (both plain TCP
// listeners; Serve adds TLS) until ctx is done or, with a Lease, until the
// lease is lost, which is returned as an error. It closes both listeners.
func (s *Server) Serve(ctx context.Context, apiLn, agentLn net.Listener) error {
	errorLog := slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	apiSrv := &http.Server{
		Handler:           http.HandlerFunc(s.serveAPI),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errorLog,
		TLSConfig:         s.apiTLSConfig(),
	}
	agentSrv := &http.Server{
		Handler:           http.HandlerFunc(s.serveConnect),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errorLog,
		TLSConfig:         s.agentTLSConfig(),
		// Agents speak HTTP/1.1 only: the session starts with an Upgrade.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	errs := make(chan error, 3)
	go func() { errs <- serveTLS(apiSrv, apiLn, "API callers") }()
	go func() { errs <- serveTLS(agentSrv, agentLn, "agents") }()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Keep file-backed certificates and CA bundles current.
	go s.opts.ServingCertificate.Run(runCtx)
	go s.opts.AgentCAs.Run(runCtx)
	go s.opts.ClientCAs.Run(runCtx)
	// The Lease has a context of its own: a stopping server first stops
	// taking requests, then releases it.
	leaseCtx, cancelLease := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelLease()
	leaseDone := make(chan struct{})
	go func() {
		defer close(leaseDone)
		if s.opts.Lease == nil {
			s.setActive(true)
			<-leaseCtx.Done()
			errs <- nil
			return
		}
		errs <- s.runWithLease(leaseCtx)
	}()

	var err error
	select {
	case err = <-errs:
	case <-ctx.Done():
	}
	// Stopping as asked (a rolling update, a drain): new requests and
	// agents get 503 with Retry-After, the Lease goes to the standby (its
	// Pod becomes the Services' endpoint), the requests in flight finish,
	// then the sessions close and the agents move to the new active server.
	graceful := ctx.Err() != nil
	if graceful {
		s.stopTaking()
	}
	cancelLease()
	// The Lease released and the Pod relabelled, unless the API server
	// does not answer.
	select {
	case <-leaseDone:
	case <-time.After(leaseStopWait):
	}
	if graceful {
		timeout := s.opts.DrainTimeout
		if timeout == 0 {
			timeout = DefaultDrainTimeout
		}
		s.requests.wait(timeout)
	}
	cancel()
	s.setActive(false)
	s.closeSessions()
	apiSrv.Close()
	agentSrv.Close()
	return err
}

// leaseStopWait bounds how long a stopping server waits to release its
// Lease and relabel its Pod.
const leaseStopWait = 10 * time.Second

func serveTLS(srv *http.Server, ln net.Listener, what string) error {
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("tunnel server: serving %s on %s: %w", what, ln.Addr(), err)
	}
	return nil
}

// apiTLSConfig serves callers with the current serving certificate and
// verifies client certificates against the current client CAs.
func (s *Server) apiTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, err := s.opts.ServingCertificate.Certificate()
			if err != nil {
				return nil, err
			}
			cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
			if s.opts.ClientCAs != nil {
				cfg.ClientAuth = tls.VerifyClientCertIfGiven
				cfg.ClientCAs = s.opts.ClientCAs.Pool()
			}
			return cfg, nil
		},
	}
}

// agentTLSConfig serves agents with the current serving certificate and
// verifies their certificates against the current agent CAs.
func (s *Server) agentTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, err := s.opts.ServingCertificate.Certificate()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				// Verified if given; a missing certificate gets a readable
				// 401 instead of a failed handshake.
				ClientAuth: tls.VerifyClientCertIfGiven,
				ClientCAs:  s.opts.AgentCAs.Pool(),
				NextProtos: []string{"http/1.1"},
			}, nil
		},
	}
}

// yamuxConfig is the session configuration of both ends; acceptBacklog
// bounds the streams opened by the peer and not yet accepted.
func yamuxConfig(window uint32, acceptBacklog int, log *slog.Logger) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.AcceptBacklog = acceptBacklog
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = 15 * time.Second
	cfg.ConnectionWriteTimeout = 15 * time.Second
	cfg.MaxStreamWindowSize = window
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return cfg
}

// setActive starts or stops accepting agents and requests. Stopping closes
// every agent session, so the agents move to the new active server.
func (s *Server) setActive(active bool) {
	was := s.active.Swap(active)
	if active {
		if !was {
			s.activeSince.Store(time.Now().UnixNano())
		}
		s.metrics.active.Set(1)
	} else {
		s.metrics.active.Set(0)
	}
	if was && !active {
		s.closeSessions()
	}
	if was != active {
		s.log.Info("tunnel server active state changed", "active", active)
	}
}

// stopTaking makes the server refuse new requests and agents as a standby
// does, leaving the sessions open for the requests in flight.
func (s *Server) stopTaking() {
	if s.active.Swap(false) {
		s.metrics.active.Set(0)
		s.log.Info("tunnel server stopping: no new requests; letting those in flight finish")
	}
}

// closeSessions closes every agent session, so the agents move to the
// active server.
func (s *Server) closeSessions() {
	for _, sess := range s.agents.drain() {
		sess.close()
		s.forgetSession(sess)
	}
}

// Active reports whether the server accepts agents and requests.
func (s *Server) Active() bool { return s.active.Load() }

// AgentInfo describes a connected agent.
type AgentInfo struct {
	Cluster   string
	ID        string
	Remote    string
	Connected time.Time
	// RTT is the last measured round-trip time to the agent; 0 before the
	// first measurement.
	RTT time.Duration
	// InFlight and Served count requests open now and proxied so far.
	InFlight int64
	Served   uint64
}

// Agents returns the agents connected for cluster.
func (s *Server) Agents(cluster string) []AgentInfo {
	var out []AgentInfo
	for _, a := range s.agents.sessions(cluster) {
		out = append(out, AgentInfo{
			Cluster: a.cluster, ID: a.id, Remote: a.remote, Connected: a.connected,
			RTT: a.rtt(), InFlight: a.inflight.Load(), Served: a.served.Load(),
		})
	}
	return out
}

// RTT returns the smallest measured round-trip time from this server to an
// agent of cluster — the latency a request to that cluster adds at best —
// and false if no agent of cluster has been measured yet. The locality
// server can use it to order failover regions.
func (s *Server) RTT(cluster string) (time.Duration, bool) {
	var best time.Duration
	for _, a := range s.agents.sessions(cluster) {
		if r := a.rtt(); r > 0 && (best == 0 || r < best) {
			best = r
		}
	}
	return best, best > 0
}

// Clusters returns the clusters with at least one connected agent, sorted.
func (s *Server) Clusters() []string {
	s.agents.mu.Lock()
	out := make([]string, 0, len(s.agents.clusters))
	for c := range s.agents.clusters {
		out = append(out, c)
	}
	s.agents.mu.Unlock()
	slices.Sort(out)
	return out
}
