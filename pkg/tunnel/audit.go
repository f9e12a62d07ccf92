package tunnel

import (
	"net/http"
	"strconv"
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
func parseKubeRequest(r *http.Request, path string) kubeRequest {
	req := r.Clone(r.Context())
	req.URL.Path, req.URL.RawPath = path, ""
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
	s.log.Info("proxied request",
		"cluster", t.cluster,
		"user", t.identity.User,
		"groups", t.identity.Groups,
		"as", t.as.User,
		"auth", t.identity.Method,
		"verb", kr.verb,
		"resource", kr.resource,
		"namespace", kr.namespace,
		"name", kr.name,
		"code", code,
		"duration", d.String(),
		"agent", agent,
		"bytes_in", in,
		"bytes_out", out,
	)
	cluster, verb := s.metrics.clusterLabel(t.cluster), verbLabel(kr.verb)
	s.metrics.requests.WithLabelValues(cluster, verb, strconv.Itoa(code)).Inc()
	s.metrics.requestDuration.WithLabelValues(cluster, verb).Observe(d.Seconds())
	s.metrics.bytes.WithLabelValues(cluster, "to_cluster").Add(float64(in))
	s.metrics.bytes.WithLabelValues(cluster, "from_cluster").Add(float64(out))
}
