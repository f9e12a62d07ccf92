package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
)

// proxyTarget is what the API proxy knows about one request; it travels in
// the request context from serveAPI to the transport.
type proxyTarget struct {
	cluster  string
	path     string
	rawPath  string
	identity *Identity
	// as is the identity impersonated in the cluster.
	as mapping.Identity
	// agent is the agent that served the request, set by the transport.
	agent *agentSession
}

type targetKey struct{}

func targetFrom(ctx context.Context) *proxyTarget {
	t, _ := ctx.Value(targetKey{}).(*proxyTarget)
	return t
}

// splitClusterPath splits /clusters/<name>/<rest> into name and /<rest>.
func splitClusterPath(p string) (cluster, rest string, ok bool) {
	after, found := strings.CutPrefix(p, ClustersPathPrefix)
	if !found {
		return "", "", false
	}
	cluster, rest, _ = strings.Cut(after, "/")
	if validateClusterName(cluster) != nil {
		return "", "", false
	}
	return cluster, "/" + rest, true
}

// serveAPI serves /healthz, /readyz and the proxied clusters under
// /clusters/<name>/.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		_, _ = w.Write([]byte("ok"))
		return
	case "/readyz":
		if !s.active.Load() {
			http.Error(w, "standby: another tunnel server holds the lease", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
		return
	}
	refuse := func(code int, reason metav1.StatusReason, metric, msg string, attrs ...any) {
		s.metrics.rejectedRequests.WithLabelValues(metric).Inc()
		s.log.Warn("request refused", append([]any{"reason", metric, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "error", msg}, attrs...)...)
		writeStatus(w, code, reason, msg)
	}
	cluster, rest, ok := splitClusterPath(r.URL.Path)
	if !ok {
		refuse(http.StatusNotFound, metav1.StatusReasonNotFound, "bad_path",
			fmt.Sprintf("path %q is not served here: use https://<tunnel server>%s<cluster>/ as the kubeconfig server", r.URL.Path, ClustersPathPrefix))
		return
	}
	defer s.requests.track(r)()
	if !s.active.Load() {
		// A hand-over (the active server stopping, a standby taking the
		// Lease) lasts a few seconds: client-go retries after Retry-After.
		w.Header().Set("Retry-After", "1")
		refuse(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "standby",
			"this tunnel server is a standby; retry against the active one")
		return
	}
	id, err := s.auth.authenticate(r)
	if err != nil {
		var limited *rateLimitedError
		if errors.As(err, &limited) {
			w.Header().Set("Retry-After", strconv.Itoa(int(limited.retryAfter.Round(time.Second).Seconds())))
			refuse(http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests, "token_rate_limited", limited.Error(), "cluster", cluster)
			return
		}
		if errors.Is(err, errUnauthenticated) {
			refuse(http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "unauthenticated", "Unauthorized", "cluster", cluster, "detail", err.Error())
			return
		}
		refuse(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "auth_error", err.Error(), "cluster", cluster)
		return
	}
	if hasImpersonation(r.Header) {
		refuse(http.StatusForbidden, metav1.StatusReasonForbidden, "impersonation",
			"impersonation headers (kubectl --as/--as-group) cannot pass the tunnel: it already acts as you in the remote cluster; drop --as",
			"cluster", cluster, "user", id.User)
		return
	}
	if !s.access.allows(id, cluster) {
		refuse(http.StatusForbidden, metav1.StatusReasonForbidden, "forbidden", s.access.deniedMessage(id, cluster),
			"cluster", cluster, "user", id.User)
		return
	}
	if !s.opts.Clusters.Has(cluster) {
		refuse(http.StatusNotFound, metav1.StatusReasonNotFound, "unknown_cluster", unknownClusterMessage(cluster),
			"cluster", cluster, "user", id.User)
		return
	}
	if s.agents.count(cluster) == 0 {
		if time.Since(time.Unix(0, s.activeSince.Load())) < agentGrace {
			w.Header().Set("Retry-After", "1")
		}
		refuse(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "no_agent",
			fmt.Sprintf("no tunnel agent of cluster %q is connected; check the meshfleet-tunnel-agent Deployment in that cluster and its logs", cluster),
			"cluster", cluster, "user", id.User)
		return
	}

	t := &proxyTarget{cluster: cluster, path: rest, identity: id, as: s.access.impersonated(id)}
	if r.URL.RawPath != "" {
		if _, raw, ok := splitClusterPath(r.URL.RawPath); ok {
			t.rawPath = raw
		}
	}
	start := time.Now()
	body := countBody(r)
	rec := &responseRecorder{ResponseWriter: w}
	if direct(r) {
		aborted := s.forwardDirect(rec, r, t)
		s.audit(r, t, rec, body.n.Load(), time.Since(start))
		if aborted {
			panic(http.ErrAbortHandler)
		}
		return
	}
	s.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
	s.audit(r, t, rec, body.n.Load(), time.Since(start))
}

// newReverseProxy builds the proxy that forwards authenticated requests to
// an agent of their cluster.
func (s *Server) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := targetFrom(pr.In.Context())
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "agent." + t.cluster
			pr.Out.URL.Path = t.path
			pr.Out.URL.RawPath = t.rawPath
			pr.Out.Host = ""
			setImpersonation(pr.Out.Header, t.as)
		},
		Transport: s.transport,
		// Watches and logs -f must reach the caller as they come:
		// ReverseProxy flushes every write of a response without a
		// Content-Length (and of text/event-stream) whatever this says.
		// A response of known length goes out with its headers in one
		// write instead of a flush of the headers on their own.
		FlushInterval: 0,
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BufferPool:    proxyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.proxyError(w, r.Context(), targetFrom(r.Context()), err)
		},
	}
}
