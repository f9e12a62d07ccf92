package xds

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus metrics, all meshfleet_xds_*.
type metrics struct {
	pushes      *prometheus.CounterVec
	pushLatency prometheus.Histogram
	ackLatency  prometheus.Histogram
	connected   prometheus.Gauge
	resources   prometheus.Gauge
	nacks       *prometheus.CounterVec
	changes     prometheus.Counter
	translate   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_xds_pushes_total", Help: "xDS responses sent to istiod, by type URL.",
		}, []string{"type"}),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshfleet_xds_push_duration_seconds", Help: "Time from the first topology change of a debounce window to the DestinationRule response being sent.", Buckets: buckets,
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshfleet_xds_ack_duration_seconds", Help: "Time from the first topology change of a debounce window to istiod acknowledging the DestinationRules (it has stored them).", Buckets: buckets,
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_xds_connected_clients", Help: "Open ADS streams (one per istiod).",
		}),
		resources: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_xds_resources", Help: "DestinationRules served.",
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_xds_nacks_total", Help: "Responses istiod rejected, by type URL.",
		}, []string{"type"}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfleet_xds_resource_changes_total", Help: "DestinationRules added, changed or removed.",
		}),
		translate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshfleet_xds_translate_duration_seconds", Help: "Time to translate the topology into DestinationRules.", Buckets: buckets,
		}),
	}
	if reg != nil {
		reg.MustRegister(m.pushes, m.pushLatency, m.ackLatency, m.connected, m.resources, m.nacks, m.changes, m.translate)
	}
	return m
}
