package tunnel

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
)

var requestInfoFactory = &request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// kubeRequest is what the audit line says about a request, parsed as the API
// server would.
type kubeRequest struct {
	verb      string
	resource  string
	namespace string
	name      string
}

// parseKubeRequest parses method and the cluster-relative path and query of r.
// It reads only the method, path and query, so it hands the parser a
// request of those three rather than a clone of r.
func parseKubeRequest(r *http.Request, path string) kubeRequest {
	req := &http.Request{Method: r.Method, URL: &url.URL{Path: path, RawQuery: r.URL.RawQuery}}
	info, err := requestInfoFactory.NewRequestInfo(req)
	if err != nil || info == nil {
		return kubeRequest{verb: r.Method, resource: path}
	}
	if !info.IsResourceRequest {
		return kubeRequest{verb: info.Verb, resource: info.Path}
	}
	res := info.Resource
	if info.APIGroup != "" {
		res = info.APIGroup + "/" + res
	}
	if info.Subresource != "" {
		res += "/" + info.Subresource
	}
	return kubeRequest{verb: info.Verb, resource: res, namespace: info.Namespace, name: info.Name}
}

// audit writes the request's audit line and records its metrics.
func (s *Server) audit(r *http.Request, t *proxyTarget, rec *responseRecorder, bodyIn int64, d time.Duration) {
	kr := parseKubeRequest(r, t.path)
	code := rec.status()
	in, out := rec.bytes()
	in += bodyIn
	agent := ""
	if t.agent != nil {
		agent = t.agent.id
	}
	s.auditLog.of(s.log, t).LogAttrs(context.Background(), slog.LevelInfo, "proxied request",
		slog.String("verb", kr.verb),
		slog.String("resource", kr.resource),
		slog.String("namespace", kr.namespace),
		slog.String("name", kr.name),
		slog.Int("code", code),
		slog.String("duration", d.String()),
		slog.String("agent", agent),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
	)
	m := s.metrics.proxiedRequest(t.cluster, kr.verb, code)
	m.requests.Inc()
	m.duration.Observe(d.Seconds())
	m.in.Add(float64(in))
	m.out.Add(float64(out))
}

// auditLoggers keeps, per caller and cluster, a logger with the audit
// line's first attributes (cluster, user, groups, as, auth) already added:
// slog's handlers format a logger's own attributes once, so each line
// formats only what is its own (the line is the same). A few callers
// (istiod, Kiali, the operator) send nearly every request; the cache is
// emptied when it holds maxAuditLoggers.
type auditLoggers struct {
	mu sync.Mutex
	m  map[auditKey]*slog.Logger
}

const maxAuditLoggers = 1024

type auditKey struct{ cluster, user, groups, as, auth string }

func (a *auditLoggers) of(log *slog.Logger, t *proxyTarget) *slog.Logger {
	k := auditKey{t.cluster, t.identity.User, strings.Join(t.identity.Groups, "\n"), t.as.User, t.identity.Method}
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.m[k]; ok {
		return l
	}
	if a.m == nil || len(a.m) >= maxAuditLoggers {
		a.m = map[auditKey]*slog.Logger{}
	}
	l := log.With(
		slog.String("cluster", t.cluster),
		slog.String("user", t.identity.User),
		slog.Any("groups", t.identity.Groups),
		slog.String("as", t.as.User),
		slog.String("auth", t.identity.Method),
	)
	a.m[k] = l
	return l
}
