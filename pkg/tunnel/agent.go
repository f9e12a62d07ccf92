package tunnel

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

// Defaults for AgentOptions.
const (
	DefaultBackoffInitial = 200 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	// stableSession is how long a session must last for the next reconnect
	// to start again from the initial backoff.
	stableSession = 10 * time.Second
)

// AgentOptions configures an Agent.
type AgentOptions struct {
	// Cluster is the name of the cluster the agent serves; its certificate
	// must be for the same cluster.
	Cluster string
	// ID distinguishes the agents of one cluster (normally the pod name);
	// the host name and a random suffix if empty.
	ID string
	// Servers are the tunnel servers' agent URLs (https://host:port). The
	// agent connects to one at a time, moving to the next when one fails or
	// is a standby.
	Servers []string
	// Certificate is the agent's client certificate, from
	// IssueAgentCertificate; a file-backed one is re-read when it changes,
	// and each new session presents the current one.
	Certificate *KeyPair
	// ServerCAs verify the servers' certificates.
	ServerCAs *CABundle
	// Upstream reaches this cluster's API server with the agent's own
	// credentials (in a cluster: rest.InClusterConfig). Those credentials
	// need RBAC impersonate on users, groups, uids and userextras.
	Upstream *rest.Config
	// BackoffInitial and BackoffMax bound the reconnect delay;
	// DefaultBackoffInitial and DefaultBackoffMax if zero.
	BackoffInitial, BackoffMax time.Duration
	// StreamWindow is the per-stream flow-control window in bytes;
	// DefaultStreamWindow if zero.
	StreamWindow uint32
	// Logger receives events; slog.Default() if nil.
	Logger *slog.Logger
	// Registerer receives the agent's metrics; a private registry if nil.
	Registerer prometheus.Registerer
	// DrainTimeout bounds how long a stopping agent lets the requests in
	// flight finish, after telling the server to open no more streams;
	// DefaultDrainTimeout if zero.
	DrainTimeout time.Duration
}

// Agent keeps a session with a tunnel server and forwards the requests that
// arrive over it to its cluster's API server.
type Agent struct {
	opts      AgentOptions
	log       *slog.Logger
	metrics   *agentMetrics
	forwarder *forwarder

	mu     sync.Mutex
	status AgentStatus
	next   int
	// requests counts the requests in flight that end by themselves.
	requests inflight
}

// AgentStatus is the agent's connection state.
type AgentStatus struct {
	// Connected is true while a session is up, with Server.
	Connected bool
	Server    string
	// Sessions counts the sessions established so far.
	Sessions int
	// LastError is the last connection failure (a *RejectedError when a
	// server refused the agent), or nil.
	LastError error
}

// RejectedError is a server's refusal of an agent.
type RejectedError struct {
	Server  string
	Code    int
	Message string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("tunnel server %s refused the agent: %d %s: %s", e.Server, e.Code, http.StatusText(e.Code), e.Message)
}

// NewAgent checks opts and returns an agent that is not yet connected.
func NewAgent(opts AgentOptions) (*Agent, error) {
	if err := validateClusterName(opts.Cluster); err != nil {
		return nil, fmt.Errorf("tunnel agent: cluster name: %w", err)
	}
	if len(opts.Servers) == 0 {
		return nil, errors.New("tunnel agent: no server given; give the tunnel server's agent URL, https://<tunnel server>:<agent port>")
	}
	for _, s := range opts.Servers {
		if u, err := url.Parse(s); err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("tunnel agent: server %q is not an https://host:port URL", s)
		}
	}
	if opts.Certificate == nil {
		return nil, errors.New("tunnel agent: no client certificate given")
	}
	if _, err := opts.Certificate.Certificate(); err != nil {
		return nil, fmt.Errorf("tunnel agent: client certificate: %w", err)
	}
	if opts.ServerCAs == nil {
		return nil, errors.New("tunnel agent: no CA bundle to verify the server with")
	}
	if opts.Upstream == nil {
		return nil, errors.New("tunnel agent: no upstream API server configuration")
	}
	if opts.ID == "" {
		opts.ID = defaultAgentID()
	}
	if opts.BackoffInitial <= 0 {
		opts.BackoffInitial = DefaultBackoffInitial
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.StreamWindow == 0 {
		opts.StreamWindow = DefaultStreamWindow
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Logger = opts.Logger.With("cluster", opts.Cluster, "agent", opts.ID)
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newAgentMetrics(opts.Registerer, opts.Cluster)
	if err != nil {
		return nil, fmt.Errorf("tunnel agent: register metrics: %w", err)
	}
	fwd, err := newForwarder(opts.Upstream, opts.Logger, m)
	if err != nil {
		return nil, fmt.Errorf("tunnel agent: %w", err)
	}
	if err := registerCertificateExpiry(opts.Registerer, "meshfleet_tunnel_agent_certificate_expiry_timestamp_seconds",
		prometheus.Labels{"cluster": opts.Cluster}, map[string]func() (time.Time, bool){
			"agent": opts.Certificate.notAfter, "server-ca": opts.ServerCAs.notAfter,
		}); err != nil {
		return nil, fmt.Errorf("tunnel agent: register metrics: %w", err)
	}
	return &Agent{opts: opts, log: opts.Logger, metrics: m, forwarder: fwd}, nil
}

// tlsConfig is the TLS configuration of the next connection: the current
// certificate and server CAs.
func (a *Agent) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return a.opts.Certificate.Certificate()
		},
		RootCAs:    a.opts.ServerCAs.Pool(),
		NextProtos: []string{"http/1.1"},
	}
}

func defaultAgentID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "agent"
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// ID returns the agent's ID.
func (a *Agent) ID() string { return a.opts.ID }

// Status returns the agent's connection state.
func (a *Agent) Status() AgentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Run connects to a server and serves the session, reconnecting with
// backoff and jitter whenever it ends, until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	go a.opts.Certificate.Run(ctx)
	go a.opts.ServerCAs.Run(ctx)
	bo := newBackoff(a.opts.BackoffInitial, a.opts.BackoffMax)
	for ctx.Err() == nil {
		conn, server, err := a.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			a.setStatus(func(s *AgentStatus) { s.LastError = err })
			delay := bo.next()
			a.log.Warn("cannot connect to a tunnel server; retrying", "error", err, "retry_in", delay.Round(time.Millisecond).String())
			sleep(ctx, delay)
			continue
		}
		started := time.Now()
		a.serve(ctx, conn, server)
		if ctx.Err() != nil {
			break
		}
		if time.Since(started) >= stableSession {
			bo.reset()
		}
		delay := bo.next()
		a.log.Info("tunnel session ended; reconnecting", "server", server, "retry_in", delay.Round(time.Millisecond).String())
		sleep(ctx, delay)
	}
	return nil
}

// connect tries each server once, starting with the last one that worked.
func (a *Agent) connect(ctx context.Context) (net.Conn, string, error) {
	var errs []error
	n := len(a.opts.Servers)
	for i := range n {
		idx := (a.next + i) % n
		server := a.opts.Servers[idx]
		conn, err := dialServer(ctx, server, a.tlsConfig(), a.opts.Cluster, a.opts.ID)
		if err == nil {
			a.next = idx
			return conn, server, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// serve runs the HTTP/1.1 forwarder on the streams of one session until the
// session or ctx ends.
func (a *Agent) serve(ctx context.Context, conn net.Conn, server string) {
	mux, err := yamux.Server(newCoalescingConn(conn), yamuxConfig(a.opts.StreamWindow, 1024, a.log))
	if err != nil {
		conn.Close()
		a.setStatus(func(s *AgentStatus) { s.LastError = err })
		return
	}
	a.setStatus(func(s *AgentStatus) {
		if s.Sessions > 0 {
			a.metrics.reconnects.Inc()
		}
		s.Connected, s.Server, s.LastError = true, server, nil
		s.Sessions++
	})
	a.metrics.connected.Set(1)
	a.log.Info("tunnel session established", "server", server)

	srv := &http.Server{
		Handler:           countRequests(&a.requests, a.forwarder),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	// Short requests are answered on the streams' goroutines; the others
	// are handed to srv (streams.go).
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := &streamServer{fwd: a.forwarder, requests: &a.requests, ctx: sctx, slow: newHandoffListener(mux)}
	go streams.serve(mux)
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(streams.slow)
		close(done)
	}()
	select {
	case <-mux.CloseChan():
	case <-ctx.Done():
		// Stopping (a rolling update): the server takes new requests to
		// the other agents while these finish.
		timeout := a.opts.DrainTimeout
		if timeout == 0 {
			timeout = DefaultDrainTimeout
		}
		drainSession(mux, srv, &a.requests, timeout)
	}
	_ = mux.Close()
	_ = srv.Close()
	<-done
	a.metrics.connected.Set(0)
	a.setStatus(func(s *AgentStatus) { s.Connected = false })
}

func (a *Agent) setStatus(f func(*AgentStatus)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.status)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
