package istio

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/canary"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
)

// defaultMinRequests is how many requests the default success-rate query
// must count before its rate can pass a batch (as the canary gate's).
const defaultMinRequests = 20

// defaultMinProxies is how many proxies must ACK a batch's new revision
// when gate.xds does not say.
const defaultMinProxies = 1

// minProxies is gate.xds.minProxies or its default.
func minProxies(g *v1beta1.RolloutXDSGate) int {
	if g.MinProxies != nil {
		return int(*g.MinProxies)
	}
	return defaultMinProxies
}

// rateQueryTimeout bounds one reading of the success rate (a reconcile
// waits for it).
const rateQueryTimeout = 10 * time.Second

// gateOf is the planner's gate for spec.updateStrategy.rollout.gate.
func gateOf(g v1beta1.RolloutGate) (tagrollout.Gate, error) {
	out := tagrollout.Gate{
		Bake:    time.Duration(g.BakeSeconds) * time.Second,
		Timeout: time.Duration(g.TimeoutSeconds) * time.Second,
	}
	pg := g.Prometheus
	if pg == nil {
		return out, nil
	}
	min, err := strconv.ParseFloat(pg.MinSuccessRate, 64)
	if err != nil || min < 0 || min > 1 {
		return out, fmt.Errorf("gate.prometheus.minSuccessRate %q is not a decimal between 0 and 1; write e.g. \"0.99\"", pg.MinSuccessRate)
	}
	out.MinSuccessRate, out.RateRequired = min, true
	if pg.Query != "" {
		if err := tagrollout.CheckRateQuery(pg.Query); err != nil {
			return out, fmt.Errorf("gate.prometheus.query: %w", err)
		}
		return out, nil
	}
	out.MinRequests = defaultMinRequests
	if pg.MinRequests != nil {
		out.MinRequests = int(*pg.MinRequests)
	}
	return out, nil
}

// observeRate reads a gating batch's success rate from Prometheus: the
// custom query's one sample, or the default query through the canary
// gate's reader (istio_requests_total of the batch's clients). The window
// is the time since the batch's tag moved. A failed query or no data is
// returned as the observation's RateProblem, never as an error: the gate
// decides what it means.
func observeRate(ctx context.Context, pg *v1beta1.RolloutPrometheusGate, min float64, minRequests int, clusters []string, sinceMoved time.Duration, now time.Time) tagrollout.Observation {
	ctx, cancel := context.WithTimeout(ctx, rateQueryTimeout)
	defer cancel()
	o := tagrollout.Observation{SuccessRate: math.NaN()}
	window := tagrollout.RateWindow(sinceMoved)
	prom, err := canary.NewPrometheus(pg.Address)
	if err != nil {
		o.RateProblem = err.Error()
		return o
	}
	if pg.Query != "" {
		q, err := tagrollout.ExpandRateQuery(pg.Query, clusters, window)
		if err != nil {
			o.RateProblem = err.Error()
			return o
		}
		v, ok, err := canary.Instant(ctx, prom, q, now)
		switch {
		case err != nil:
			o.RateProblem = fmt.Sprintf("Prometheus at %s: %v", pg.Address, err)
		case !ok || math.IsNaN(v):
			o.RateProblem = fmt.Sprintf("Prometheus at %s returned no data for %s", pg.Address, q)
		default:
			o.Requests, o.SuccessRate = -1, v
		}
		return o
	}
	g := canary.Gate{PrometheusURL: pg.Address, Selector: tagrollout.DefaultRateSelector(clusters),
		Window: canary.Duration(window), MinSuccessRate: min, MinRequests: float64(minRequests)}
	rd, err := g.Read(ctx, prom, now)
	if err != nil {
		o.RateProblem = fmt.Sprintf("Prometheus at %s: %v", pg.Address, err)
		return o
	}
	if rd.Requests <= 0 {
		req, _, _ := g.Queries()
		o.RateProblem = fmt.Sprintf("Prometheus at %s returned no requests for %s", pg.Address, req)
		return o
	}
	o.Requests, o.SuccessRate = int(math.Round(rd.Requests)), rd.SuccessRate
	return o
}
