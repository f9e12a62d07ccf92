package tunnel

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics are the Server's Prometheus metrics.
type serverMetrics struct {
	agents           *prometheus.GaugeVec
	agentConnections *prometheus.CounterVec
	agentRejections  *prometheus.CounterVec
	agentRTT         *prometheus.GaugeVec
	requests         *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	bytes            *prometheus.CounterVec
	rejectedRequests *prometheus.CounterVec
	agentRevocations prometheus.Counter
	active           prometheus.Gauge
	// clusters bounds the cluster label to known clusters.
	clusters *ClusterSet
	// proxied holds the metric children of each (cluster, verb, code)
	// seen, so that a request's audit does not look four of them up by
	// label values. Bounded as the labels are.
	proxied sync.Map // proxiedKey → *proxiedChildren
}

type proxiedKey struct {
	cluster, verb string
	code          int
}

// proxiedChildren are the metric children one proxied request updates.
type proxiedChildren struct {
	requests prometheus.Counter
	duration prometheus.Observer
	in, out  prometheus.Counter
}

// proxiedRequest returns the children for a request to cluster with verb
// answered with code; both labels are bounded here.
func (m *serverMetrics) proxiedRequest(cluster, verb string, code int) *proxiedChildren {
	k := proxiedKey{m.clusterLabel(cluster), verbLabel(verb), code}
	if c, ok := m.proxied.Load(k); ok {
		return c.(*proxiedChildren)
	}
	c, _ := m.proxied.LoadOrStore(k, &proxiedChildren{
		requests: m.requests.WithLabelValues(k.cluster, k.verb, strconv.Itoa(code)),
		duration: m.requestDuration.WithLabelValues(k.cluster, k.verb),
		in:       m.bytes.WithLabelValues(k.cluster, "to_cluster"),
		out:      m.bytes.WithLabelValues(k.cluster, "from_cluster"),
	})
	return c.(*proxiedChildren)
}

func newServerMetrics(reg prometheus.Registerer, clusters *ClusterSet) (*serverMetrics, error) {
	m := &serverMetrics{
		clusters: clusters,
		agentRevocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfleet_tunnel_agent_revocations_total",
			Help: "Agent sessions closed because their cluster's RemoteIstio was deleted.",
		}),
		agents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshfleet_tunnel_agents_connected",
			Help: "Agents connected to this server, per cluster.",
		}, []string{"cluster"}),
		agentConnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_tunnel_agent_connections_total",
			Help: "Agent sessions accepted, per cluster; every reconnect counts.",
		}, []string{"cluster"}),
		agentRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_tunnel_agent_rejections_total",
			Help: "Agent connections refused or closed, by reason (unauthenticated, forbidden, unknown_cluster, too_many_agents, agent_opened_stream, standby, bad_request).",
		}, []string{"reason"}),
		agentRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshfleet_tunnel_agent_rtt_seconds",
			Help: "Last measured round-trip time from the server to each agent.",
		}, []string{"cluster", "agent"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_tunnel_requests_total",
			Help: "Requests proxied to a cluster, by Kubernetes verb and HTTP status code.",
		}, []string{"cluster", "verb", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshfleet_tunnel_request_duration_seconds",
			Help:    "Duration of proxied requests, by Kubernetes verb (watches and upgraded connections last as long as they are open).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"cluster", "verb"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_tunnel_bytes_total",
			Help: "Bytes proxied, by direction: to_cluster (request bodies and upgraded streams) and from_cluster.",
		}, []string{"cluster", "direction"}),
		rejectedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_tunnel_rejected_requests_total",
			Help: "Requests refused before reaching an agent, by reason (unauthenticated, forbidden, token_rate_limited, impersonation, unknown_cluster, no_agent, standby, bad_path, auth_error).",
		}, []string{"reason"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_tunnel_server_active",
			Help: "1 while this server holds the tunnel Lease (or runs without one), else 0.",
		}),
	}
	for _, c := range []prometheus.Collector{m.agents, m.agentConnections, m.agentRejections, m.agentRTT,
		m.requests, m.requestDuration, m.bytes, m.rejectedRequests, m.agentRevocations, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// clusterLabel is cluster if it is known, else "other": label values stay
// bounded by the clusters of the mesh.
func (m *serverMetrics) clusterLabel(cluster string) string {
	if m.clusters.Has(cluster) {
		return cluster
	}
	return "other"
}

// knownVerbs are the Kubernetes verbs a request can map to; anything else
// is counted as "other".
var knownVerbs = map[string]bool{
	"get": true, "list": true, "watch": true, "create": true, "update": true, "patch": true,
	"delete": true, "deletecollection": true, "proxy": true, "head": true, "options": true,
	"post": true, "put": true,
}

// verbLabel bounds the verb label: a caller can send any HTTP method.
func verbLabel(verb string) string {
	if knownVerbs[verb] {
		return verb
	}
	return "other"
}

// registerCertificateExpiry exports, per loaded certificate (or CA bundle,
// its first expiry), when it expires, re-read at every scrape so that a
// rotated certificate shows at once.
func registerCertificateExpiry(reg prometheus.Registerer, name string, constLabels prometheus.Labels, certs map[string]func() (time.Time, bool)) error {
	return reg.Register(&expiryCollector{certs: certs, desc: prometheus.NewDesc(name,
		"When each certificate loaded expires (Unix time); for a CA bundle, its first certificate to expire.",
		[]string{"certificate"}, constLabels)})
}

type expiryCollector struct {
	desc  *prometheus.Desc
	certs map[string]func() (time.Time, bool)
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for name, f := range c.certs {
		if t, ok := f(); ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.Unix()), name)
		}
	}
}

// agentMetrics are the Agent's Prometheus metrics.
type agentMetrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	requests   *prometheus.CounterVec
}

func newAgentMetrics(reg prometheus.Registerer, cluster string) (*agentMetrics, error) {
	labels := prometheus.Labels{"cluster": cluster}
	m := &agentMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "meshfleet_tunnel_agent_connected",
			Help:        "1 while the agent has a session with a tunnel server, else 0.",
			ConstLabels: labels,
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "meshfleet_tunnel_agent_reconnects_total",
			Help:        "Sessions the agent established after its first one.",
			ConstLabels: labels,
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "meshfleet_tunnel_agent_requests_total",
			Help:        "Requests the agent forwarded to its API server, by HTTP status code.",
			ConstLabels: labels,
		}, []string{"code"}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.reconnects, m.requests} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
