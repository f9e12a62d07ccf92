package rulesync

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus metrics, all meshfleet_locality_*.
type metrics struct {
	writes      *prometheus.CounterVec
	writeErrors *prometheus.CounterVec
	rules       prometheus.Gauge
	held        prometheus.Gauge
	unsynced    prometheus.Gauge
	leader      prometheus.Gauge
	conflicts   prometheus.Gauge
	deferred    prometheus.Gauge
	// deferredTotal counts rule writes the hold-down deferred.
	deferredTotal prometheus.Counter
	translate     prometheus.Histogram
	written       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_locality_writes_total", Help: "DestinationRule writes to the primary's API server, by operation (create, update, delete).",
		}, []string{"op"}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfleet_locality_write_errors_total", Help: "Failed DestinationRule writes, by operation; retried with backoff.",
		}, []string{"op"}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_locality_rules", Help: "DestinationRules the locality server manages in the primary (its informer's count).",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_locality_rules_held", Help: "Rules kept as they are although the translation changed or dropped them, because a member cluster has not synced since start.",
		}),
		unsynced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_locality_members_unsynced", Help: "Member clusters whose caches have not synced since start (unreachable or slow).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_locality_leader", Help: "1 while this replica holds the Lease and writes the rules, else 0.",
		}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_locality_conflicts", Help: "Generated rules not written because an object someone else made has their name.",
		}),
		deferred: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshfleet_locality_rules_deferred", Help: "Rule writes waiting for the hold-down: they change only failover entries no request uses now.",
		}),
		deferredTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfleet_locality_updates_deferred_total", Help: "Rule writes the hold-down deferred (written later, or no longer needed).",
		}),
		translate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshfleet_locality_translate_duration_seconds", Help: "Time to translate the topology into DestinationRules.", Buckets: buckets,
		}),
		written: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshfleet_locality_write_duration_seconds", Help: "Time from the first topology change of a debounce window to its rules written to the API server.", Buckets: buckets,
		}),
	}
	if reg != nil {
		reg.MustRegister(m.writes, m.writeErrors, m.rules, m.held, m.unsynced, m.leader, m.conflicts, m.deferred, m.deferredTotal, m.translate, m.written)
	}
	return m
}
