// Package rtt feeds the round-trip times the tunnel server measures into the
// locality server's failover order (the "measured RTT" step between an
// explicit order and the default, see pkg/locality).
//
// The tunnel server (meshfleet tunnel server) is another process; it
// exports the RTT to each agent as the gauge
// meshfleet_tunnel_agent_rtt_seconds{cluster, agent} on its /metrics. A
// Poller scrapes that endpoint and keeps, per cluster, the smallest RTT over
// its agents (what tunnel.Server.RTT returns in-process). A Tracker turns
// those RTTs into region distances for locality.Policy and calls Notify
// only when the failover order they imply changes, not on every bit of
// jitter.
package rtt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names read from the tunnel server's exposition.
const (
	MetricAgentRTT     = "meshfleet_tunnel_agent_rtt_seconds"
	MetricServerActive = "meshfleet_tunnel_server_active"
)

// DefaultInterval is how often a Poller scrapes by default.
const DefaultInterval = 10 * time.Second

// Scrape is what one read of the tunnel server's /metrics gave.
type Scrape struct {
	// RTT is, per cluster, the smallest positive RTT over its agents.
	// Clusters without a measured agent are absent.
	RTT map[string]time.Duration
	// Standby is true when the server reports it does not hold the tunnel
	// Lease (meshfleet_tunnel_server_active 0): it has no agents, so its
	// (empty) RTTs say nothing about the clusters.
	Standby bool
}

// Parse reads the Prometheus text exposition format.
func Parse(r io.Reader) (Scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Scrape{}, fmt.Errorf("parsing the metrics exposition: %w", err)
	}
	out := Scrape{RTT: map[string]time.Duration{}}
	if f := fams[MetricServerActive]; f != nil {
		for _, m := range f.GetMetric() {
			if m.GetGauge() != nil && m.GetGauge().GetValue() == 0 {
				out.Standby = true
			}
		}
	}
	f := fams[MetricAgentRTT]
	if f == nil {
		return out, nil
	}
	for _, m := range f.GetMetric() {
		cluster := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "cluster" {
				cluster = l.GetValue()
			}
		}
		v := m.GetGauge().GetValue()
		if cluster == "" || !(v > 0) || math.IsInf(v, 0) {
			continue // not measured yet (0), or nonsense
		}
		d := time.Duration(v * float64(time.Second))
		if cur, ok := out.RTT[cluster]; !ok || d < cur {
			out.RTT[cluster] = d
		}
	}
	return out, nil
}

// Poller scrapes the tunnel server's /metrics every Interval.
//
// A failed scrape, or one answered by a standby tunnel server, keeps the
// last good RTTs: a stale order is better than one flapping to the default
// while the tunnel server restarts or fails over.
type Poller struct {
	// URL is the tunnel server's metrics endpoint, e.g.
	// http://meshfleet-tunnel.istio-system:9090/metrics.
	URL string
	// Interval between scrapes; DefaultInterval if zero.
	Interval time.Duration
	// Client does the requests (http.DefaultClient if nil); each scrape
	// times out after Interval.
	Client *http.Client
	Log    *slog.Logger
	// OnPoll, if set, is called after each scrape that changed the RTTs
	// (e.g. Tracker.Check).
	OnPoll func()

	mu     sync.Mutex
	rtt    map[string]time.Duration
	failed bool
}

// RTTs returns the last good per-cluster RTTs (a copy).
func (p *Poller) RTTs() map[string]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.rtt)
}

// Run polls until ctx ends, the first time at once.
func (p *Poller) Run(ctx context.Context) {
	iv := p.interval()
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		p.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Poller) interval() time.Duration {
	if p.Interval <= 0 {
		return DefaultInterval
	}
	return p.Interval
}

// poll scrapes once, logging failures (once per run of failures).
func (p *Poller) poll(ctx context.Context) {
	s, err := p.Poll(ctx)
	p.mu.Lock()
	wasFailed := p.failed
	p.failed = err != nil
	p.mu.Unlock()
	if p.Log == nil {
		return
	}
	switch {
	case err != nil && !wasFailed:
		p.Log.Warn("cannot read RTTs from the tunnel server; keeping the last measured failover order", "url", p.URL, "error", err)
	case err == nil && wasFailed:
		p.Log.Info("reading RTTs from the tunnel server again", "url", p.URL, "clusters", len(s.RTT))
	}
}

// Poll scrapes once and, unless the scrape failed or came from a standby
// server, makes its RTTs the current ones (calling OnPoll if they changed).
func (p *Poller) Poll(ctx context.Context) (Scrape, error) {
	s, err := p.scrape(ctx)
	if err != nil || s.Standby {
		return s, err
	}
	p.mu.Lock()
	changed := !maps.Equal(p.rtt, s.RTT) || p.rtt == nil
	p.rtt = s.RTT
	p.mu.Unlock()
	if changed && p.OnPoll != nil {
		p.OnPoll()
	}
	return s, nil
}

func (p *Poller) scrape(ctx context.Context) (Scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, p.interval())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return Scrape{}, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return Scrape{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return Scrape{}, fmt.Errorf("GET %s: %s", p.URL, resp.Status)
	}
	return Parse(io.LimitReader(resp.Body, 16<<20))
}
