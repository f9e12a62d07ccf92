package dashboards

import (
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MeshLabels are the labels of Istio's standard metrics that meshfleet's
// dashboards, its canary gate and Kiali read.
var MeshLabels = []string{
	"reporter", "source_workload", "source_workload_namespace", "source_cluster",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"destination_workload", "destination_workload_namespace", "destination_version", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
}

// MeshMetrics records Istio's standard request metrics
// (istio_requests_total, istio_request_duration_milliseconds) as a sidecar
// would, for test apps that use proxyless gRPC and so have none.
type MeshMetrics struct {
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Request is one request as a source-side reporter sees it.
type Request struct {
	SourceWorkload, SourceNamespace, SourceCluster        string
	Service, ServiceName, ServiceNamespace                string
	DestWorkload, DestNamespace, DestVersion, DestCluster string
	// GRPCStatus is the gRPC status code (0 is OK).
	GRPCStatus int
	Duration   time.Duration
}

// NewMeshMetrics returns the metrics in a registry of their own.
func NewMeshMetrics() *MeshMetrics {
	m := &MeshMetrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total", Help: "Requests, as Istio's proxies report them.",
		}, MeshLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_duration_milliseconds", Help: "Request durations, as Istio's proxies report them.",
			// Istio's default buckets.
			Buckets: []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000},
		}, MeshLabels),
	}
	m.Registry.MustRegister(m.requests, m.duration)
	return m
}

// Observe records r.
func (m *MeshMetrics) Observe(r Request) {
	code := "200" // gRPC answers HTTP 200 whatever its status
	lv := []string{"source", r.SourceWorkload, r.SourceNamespace, r.SourceCluster,
		r.Service, r.ServiceName, r.ServiceNamespace,
		r.DestWorkload, r.DestNamespace, r.DestVersion, r.DestCluster,
		"grpc", code, strconv.Itoa(r.GRPCStatus), "-"}
	m.requests.WithLabelValues(lv...).Inc()
	m.duration.WithLabelValues(lv...).Observe(float64(r.Duration) / float64(time.Millisecond))
}

// Serve serves the metrics on 127.0.0.1 at /metrics until the test ends
// and returns the host:port.
func (m *MeshMetrics) Serve(t testing.TB) string {
	t.Helper()
	return ServeRegistry(t, m.Registry)
}

// ServeRegistry serves a registry's metrics on 127.0.0.1 at /metrics until
// the test ends and returns the host:port.
func ServeRegistry(t testing.TB, g prometheus.Gatherer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}
