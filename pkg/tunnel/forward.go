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
	"net/url"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// forwarder is the agent's handler: it sends each request from the server to
// the cluster's API server with the agent's own credentials, keeping the
// impersonation headers the server set.
type forwarder struct {
	proxy   *httputil.ReverseProxy
	metrics *agentMetrics
	gate    *upstreamGate
	log     *slog.Logger
	// upstream and transport are the API server and the way to it, for
	// the short requests served without the proxy (streams.go).
	upstream  *url.URL
	transport http.RoundTripper
}

func newForwarder(cfg *rest.Config, log *slog.Logger, m *agentMetrics) (*forwarder, error) {
	if cfg.Impersonate.UserName != "" || len(cfg.Impersonate.Groups) > 0 {
		return nil, errors.New("upstream configuration impersonates a user itself; the agent impersonates each caller and needs plain credentials")
	}
	upstream, err := url.Parse(cfg.Host)
	if err != nil || cfg.Host == "" {
		return nil, fmt.Errorf("upstream API server %q is not a URL", cfg.Host)
	}
	if upstream.Scheme == "" {
		upstream, _ = url.Parse("https://" + cfg.Host)
	}
	h2, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("build transport to the API server %s: %w", cfg.Host, err)
	}
	// Upgrades (SPDY, WebSocket) need HTTP/1.1 all the way; short
	// requests take it too (see upstreamSplit).
	h1cfg := rest.CopyConfig(cfg)
	h1cfg.NextProtos = []string{"http/1.1"}
	h1, err := rest.TransportFor(h1cfg)
	if err != nil {
		return nil, fmt.Errorf("build HTTP/1.1 transport to the API server %s: %w", cfg.Host, err)
	}
	short, err := directUpstream(cfg, upstream, h1)
	if err != nil {
		return nil, fmt.Errorf("build the connection pool to the API server %s: %w", cfg.Host, err)
	}
	readyz := *upstream
	readyz.Path, readyz.RawQuery = strings.TrimSuffix(upstream.Path, "/")+"/readyz", ""
	gate := &upstreamGate{client: &http.Client{Transport: h1}, readyzURL: readyz.String(), log: log}
	split := &upstreamSplit{h1: h1, h2: h2, short: short}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			// Only the server's impersonation headers pass; any other
			// credential is the agent's own (added by its transport).
			imp := impersonationOf(pr.In.Header)
			stripCredentials(pr.Out.Header)
			for k, v := range imp {
				pr.Out.Header[k] = v
			}
		},
		Transport: split,
		// Streaming responses (no Content-Length) are flushed at every
		// write regardless; see newReverseProxy.
		FlushInterval: 0,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BufferPool:    proxyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			log.Warn("forwarding to the API server failed", "method", r.Method, "path", r.URL.Path, "error", err)
			gate.markDown(err)
			writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable,
				fmt.Sprintf("tunnel agent: API server %s: %v", upstream.Host, err))
		},
	}
	return &forwarder{proxy: rp, metrics: m, gate: gate, log: log, upstream: upstream, transport: split}, nil
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Host == pingHost && r.URL.Path == pingPath {
		servePing(w, r)
		return
	}
	// The agent's credentials never act on their own behalf: every request
	// must name the caller to impersonate.
	if strings.TrimSpace(r.Header.Get(authnv1.ImpersonateUserHeader)) == "" {
		f.metrics.requests.WithLabelValues(strconv.Itoa(http.StatusForbidden)).Inc()
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
			"tunnel agent: request carries no Impersonate-User header; the agent forwards only requests on behalf of an authenticated caller")
		return
	}
	if err := f.gate.ready(r.Context()); err != nil {
		f.metrics.requests.WithLabelValues(strconv.Itoa(http.StatusServiceUnavailable)).Inc()
		w.Header().Set("Retry-After", "1")
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			fmt.Sprintf("tunnel agent: the cluster's API server is not ready (it was unreachable and is starting again: %v); retry shortly", err))
		return
	}
	rec := &responseRecorder{ResponseWriter: w}
	f.proxy.ServeHTTP(rec, r)
	f.metrics.requests.WithLabelValues(strconv.Itoa(rec.status())).Inc()
}

// impersonationOf returns the Impersonate-User and Impersonate-Group
// headers of h, the only impersonation the server sends.
func impersonationOf(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range []string{authnv1.ImpersonateUserHeader, authnv1.ImpersonateGroupHeader} {
		if v := h.Values(k); len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// upstreamSplit chooses the connection to the API server by the kind of
// request: upgrades (SPDY, WebSocket) need HTTP/1.1; watches and followed
// logs, which stay open, share HTTP/2 connections (hundreds of streams
// each); every other request, short, takes a pooled HTTP/1.1 connection,
// which costs less per request than an HTTP/2 stream (about 70 µs of CPU
// and 0.1 ms of latency less per small GET in tests/bench/tunnel): short
// bodyless GETs and HEADs from the caller's goroutine (connPool), the rest
// through the HTTP/1.1 Transport.
type upstreamSplit struct {
	h1, h2 http.RoundTripper
	// short is the connPool with the configuration's authentication, or
	// h1 where the configuration needs what only the Transport does
	// (proxies, custom dialers, credential plugins).
	short http.RoundTripper
}

func (u *upstreamSplit) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Upgrade") == "" && longRunning(req) {
		return u.h2.RoundTrip(req)
	}
	if direct(req) {
		return u.short.RoundTrip(req)
	}
	return u.h1.RoundTrip(req)
}

// directUpstream returns a connPool of TLS connections to the API server
// at upstream, wrapped with cfg's authentication; or fallback when cfg
// asks for a proxy (also from the environment), a dialer of its own or a
// credential plugin, which only the Transport handles.
func directUpstream(cfg *rest.Config, upstream *url.URL, fallback http.RoundTripper) (http.RoundTripper, error) {
	if cfg.Proxy != nil || cfg.Dial != nil || cfg.ExecProvider != nil || cfg.AuthProvider != nil || cfg.WrapTransport != nil || upstream.Scheme != "https" {
		return fallback, nil
	}
	if p, err := http.ProxyFromEnvironment(&http.Request{URL: upstream}); err != nil || p != nil {
		return fallback, nil
	}
	tc, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	if tc == nil {
		tc = &tls.Config{}
	}
	tc = tc.Clone()
	tc.NextProtos = []string{"http/1.1"}
	if tc.ServerName == "" {
		tc.ServerName = upstream.Hostname()
	}
	addr := upstream.Host
	if upstream.Port() == "" {
		addr = net.JoinHostPort(upstream.Hostname(), "443")
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	pool := &connPool{
		dial: func(ctx context.Context) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, tc)
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		},
		name: "API server " + upstream.Host,
	}
	return rest.HTTPWrappersForConfig(cfg, roundTripperFunc(pool.roundTrip))
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
