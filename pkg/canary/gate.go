package canary

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Gate is the analysis that must pass before a canary takes its next step.
// Its readings come from Istio's standard metrics in Prometheus:
// istio_requests_total (success rate) and
// istio_request_duration_milliseconds (latency), for the requests that the
// canary served.
type Gate struct {
	// PrometheusURL is Prometheus's base URL, e.g. http://prometheus.istio-system:9090.
	PrometheusURL string `json:"prometheusURL"`
	// Selector holds the PromQL label matchers that pick the canary's
	// requests, e.g. destination_service="reviews.default.svc.cluster.local",destination_version="v2".
	Selector string `json:"selector"`
	// Window is how far back each reading looks (a PromQL range). Default 1m.
	Window Duration `json:"window,omitempty"`
	// MinSuccessRate is the lowest acceptable share (0..1) of requests that
	// succeed: no 5xx response code and gRPC status OK. 0 disables the check.
	MinSuccessRate float64 `json:"minSuccessRate,omitempty"`
	// MaxLatencyMillis is the highest acceptable 99th-percentile latency. 0
	// disables the check.
	MaxLatencyMillis float64 `json:"maxLatencyMillis,omitempty"`
	// MinRequests is how many requests the window must hold for a reading
	// to count; with fewer the canary holds its step. Default 20.
	MinRequests float64 `json:"minRequests,omitempty"`
}

// Duration is a time.Duration that reads and writes as "30s".
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Reading is what the gate saw.
type Reading struct {
	Time time.Time `json:"time"`
	// Requests in the window.
	Requests float64 `json:"requests"`
	// SuccessRate is the share of successful requests (NaN without requests).
	SuccessRate float64 `json:"successRate"`
	// LatencyP99Millis is the 99th-percentile latency (NaN without data).
	LatencyP99Millis float64 `json:"latencyP99Millis"`
	// Verdict is Pass, Hold (too few requests) or Fail.
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
}

// Verdict is the outcome of one reading.
type Verdict string

const (
	VerdictPass Verdict = "Pass"
	VerdictHold Verdict = "Hold"
	VerdictFail Verdict = "Fail"
)

// MarshalJSON keeps NaN readings printable (JSON has no NaN).
func (r Reading) MarshalJSON() ([]byte, error) {
	type plain struct {
		Time             time.Time `json:"time"`
		Requests         float64   `json:"requests"`
		SuccessRate      *float64  `json:"successRate,omitempty"`
		LatencyP99Millis *float64  `json:"latencyP99Millis,omitempty"`
		Verdict          Verdict   `json:"verdict"`
		Reason           string    `json:"reason,omitempty"`
	}
	num := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(plain{r.Time, r.Requests, num(r.SuccessRate), num(r.LatencyP99Millis), r.Verdict, r.Reason})
}

// Validate checks the gate's settings.
func (g *Gate) Validate() error {
	if g.PrometheusURL == "" {
		return fmt.Errorf("gate: no Prometheus URL; give one such as http://prometheus.istio-system:9090")
	}
	if strings.TrimSpace(g.Selector) == "" {
		return fmt.Errorf("gate: no selector for the canary's requests; give a label selector such as destination_version=\"v2\"")
	}
	if g.MinSuccessRate < 0 || g.MinSuccessRate > 1 {
		return fmt.Errorf("gate: minimum success rate %v is not between 0 and 1; write e.g. 0.99", g.MinSuccessRate)
	}
	if g.MaxLatencyMillis < 0 {
		return fmt.Errorf("gate: maximum latency %vms is negative", g.MaxLatencyMillis)
	}
	if g.MinSuccessRate == 0 && g.MaxLatencyMillis == 0 {
		return fmt.Errorf("gate: no threshold; set a minimum success rate, a maximum p99 latency, or both")
	}
	return nil
}

func (g *Gate) window() string {
	w := time.Duration(g.Window)
	if w <= 0 {
		w = time.Minute
	}
	return model.Duration(w).String()
}

func (g *Gate) minRequests() float64 {
	if g.MinRequests <= 0 {
		return 20
	}
	return g.MinRequests
}

// Queries returns the PromQL the gate runs: requests, successful requests
// and the 99th-percentile latency over the window.
func (g *Gate) Queries() (requests, succeeded, latency string) {
	sel, w := g.Selector, g.window()
	requests = fmt.Sprintf(`sum(increase(istio_requests_total{%s}[%s]))`, sel, w)
	succeeded = fmt.Sprintf(`sum(increase(istio_requests_total{%s,response_code!~"5..",grpc_response_status=~"0|"}[%s]))`, sel, w)
	latency = fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%s}[%s])))`, sel, w)
	return requests, succeeded, latency
}

// Judge turns raw numbers into a Reading's verdict (pure).
func (g *Gate) Judge(r Reading) Reading {
	switch {
	case r.Requests < g.minRequests():
		r.Verdict, r.Reason = VerdictHold, fmt.Sprintf("%.0f requests in the last %s, fewer than the %.0f a reading needs", r.Requests, g.window(), g.minRequests())
	case g.MinSuccessRate > 0 && !(r.SuccessRate >= g.MinSuccessRate):
		r.Verdict, r.Reason = VerdictFail, fmt.Sprintf("success rate %.2f%% is below the minimum %.2f%% (%.0f requests in %s)", 100*r.SuccessRate, 100*g.MinSuccessRate, r.Requests, g.window())
	case g.MaxLatencyMillis > 0 && r.LatencyP99Millis > g.MaxLatencyMillis:
		r.Verdict, r.Reason = VerdictFail, fmt.Sprintf("p99 latency %.1fms is above the maximum %.1fms", r.LatencyP99Millis, g.MaxLatencyMillis)
	default:
		r.Verdict, r.Reason = VerdictPass, ""
	}
	return r
}

// NewPrometheus returns a Prometheus HTTP API client for url.
func NewPrometheus(url string) (promv1.API, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", url, err)
	}
	return promv1.NewAPI(c), nil
}

// Read queries Prometheus and judges the result.
func (g *Gate) Read(ctx context.Context, prom promv1.API, now time.Time) (Reading, error) {
	qr, qs, ql := g.Queries()
	r := Reading{Time: now.UTC()}
	var err error
	if r.Requests, err = scalar(ctx, prom, qr, now); err != nil {
		return r, err
	}
	ok, err := scalar(ctx, prom, qs, now)
	if err != nil {
		return r, err
	}
	r.SuccessRate = math.NaN()
	if r.Requests > 0 {
		r.SuccessRate = ok / r.Requests
	}
	if r.LatencyP99Millis, err = scalar(ctx, prom, ql, now); err != nil {
		return r, err
	}
	if math.IsNaN(r.Requests) {
		r.Requests = 0
	}
	return g.Judge(r), nil
}

// scalar runs an instant query that yields at most one sample: no sample
// reads as 0 for sums (no traffic) and NaN is kept for quantiles.
func scalar(ctx context.Context, prom promv1.API, q string, at time.Time) (float64, error) {
	v, ok, err := Instant(ctx, prom, q, at)
	switch {
	case err != nil:
		return 0, err
	case !ok && strings.HasPrefix(q, "histogram_quantile"):
		return math.NaN(), nil
	}
	return v, nil
}

// Instant runs an instant query that yields at most one sample and returns
// its value, or ok false when it returned no sample (no data).
func Instant(ctx context.Context, prom promv1.API, q string, at time.Time) (v float64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, _, err := prom.Query(ctx, q, at)
	if err != nil {
		return 0, false, fmt.Errorf("querying Prometheus for %s: %w", q, err)
	}
	switch res := res.(type) {
	case *model.Scalar:
		return float64(res.Value), true, nil
	case model.Vector:
		switch len(res) {
		case 0:
			return 0, false, nil
		case 1:
			return float64(res[0].Value), true, nil
		}
		return 0, false, fmt.Errorf("querying Prometheus for %s: %d series, want one; narrow the gate's selector", q, len(res))
	}
	return 0, false, fmt.Errorf("querying Prometheus for %s: got a %s, want a vector", q, res.Type())
}
