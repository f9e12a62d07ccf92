package rtt

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// exposition is what a tunnel server's /metrics looks like: two agents in
// east (one not measured yet), one in west, and unrelated metrics.
const exposition = `# HELP meshfleet_tunnel_agent_rtt_seconds Last measured round-trip time from the server to each agent.
# TYPE meshfleet_tunnel_agent_rtt_seconds gauge
meshfleet_tunnel_agent_rtt_seconds{agent="east-a",cluster="east"} 0.012
meshfleet_tunnel_agent_rtt_seconds{agent="east-b",cluster="east"} 0.0085
meshfleet_tunnel_agent_rtt_seconds{agent="east-c",cluster="east"} 0
meshfleet_tunnel_agent_rtt_seconds{agent="west-a",cluster="west"} 0.071
# HELP meshfleet_tunnel_agents_connected Agents connected to this server, per cluster.
# TYPE meshfleet_tunnel_agents_connected gauge
meshfleet_tunnel_agents_connected{cluster="east"} 3
meshfleet_tunnel_agents_connected{cluster="west"} 1
# HELP meshfleet_tunnel_server_active 1 while this server holds the tunnel Lease (or runs without one), else 0.
# TYPE meshfleet_tunnel_server_active gauge
meshfleet_tunnel_server_active 1
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
`

const standbyExposition = `# TYPE meshfleet_tunnel_server_active gauge
meshfleet_tunnel_server_active 0
`

func TestParseMinOverAgents(t *testing.T) {
	s, err := Parse(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{"east": 8500 * time.Microsecond, "west": 71 * time.Millisecond}
	if len(s.RTT) != len(want) || s.RTT["east"] != want["east"] || s.RTT["west"] != want["west"] {
		t.Errorf("RTT = %v, want %v (the smallest measured RTT over each cluster's agents)", s.RTT, want)
	}
	if s.Standby {
		t.Error("Standby = true for an active server")
	}
	if s, err := Parse(strings.NewReader(standbyExposition)); err != nil || !s.Standby || len(s.RTT) != 0 {
		t.Errorf("standby exposition: %+v, %v; want Standby and no RTTs", s, err)
	}
	if _, err := Parse(strings.NewReader("meshfleet_tunnel_agent_rtt_seconds{cluster=\"east\" 1\n")); err == nil {
		t.Error("a malformed exposition parsed without error")
	}
}

// metricsServer serves whatever body is set, as the tunnel server would.
type metricsServer struct {
	mu     sync.Mutex
	body   string
	status int
}

func (m *metricsServer) set(status int, body string) {
	m.mu.Lock()
	m.status, m.body = status, body
	m.mu.Unlock()
}

func (m *metricsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.WriteHeader(m.status)
	_, _ = w.Write([]byte(m.body))
}

func TestPollerHTTP(t *testing.T) {
	ms := &metricsServer{}
	ms.set(http.StatusOK, exposition)
	hs := httptest.NewServer(ms)
	defer hs.Close()
	var polls atomic.Int32
	p := &Poller{URL: hs.URL + "/metrics", Interval: time.Second, OnPoll: func() { polls.Add(1) }}
	ctx := t.Context()

	if _, err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.RTTs(); got["east"] != 8500*time.Microsecond || got["west"] != 71*time.Millisecond || len(got) != 2 {
		t.Fatalf("RTTs() = %v", got)
	}
	if _, err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := polls.Load(); n != 1 {
		t.Errorf("OnPoll called %d times for two equal scrapes, want 1", n)
	}

	// A standby server (no agents) or a failing one leaves the RTTs alone.
	ms.set(http.StatusOK, standbyExposition)
	if _, err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	ms.set(http.StatusInternalServerError, "boom")
	if _, err := p.Poll(ctx); err == nil {
		t.Error("a 500 from the tunnel server gave no error")
	}
	if got := p.RTTs(); len(got) != 2 || polls.Load() != 1 {
		t.Errorf("after standby and failed scrapes: RTTs() = %v, OnPoll calls %d; want the last good RTTs and no call", got, polls.Load())
	}

	// Run polls at once, then every Interval.
	ms.set(http.StatusOK, strings.Replace(exposition, "0.071", "0.05", 1))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(rctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for p.RTTs()["west"] != 50*time.Millisecond && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := p.RTTs()["west"]; got != 50*time.Millisecond {
		t.Errorf("after Run: west = %v, want 50ms", got)
	}
}

// topo has the primary in us-east-1 and one cluster in each other region.
func topo() *topology.Topology {
	cluster := func(name, region string) topology.Cluster {
		return topology.Cluster{Name: name, Nodes: []topology.Node{
			{Name: name + "-1", Locality: topology.Locality{Region: region, Zone: region + "a"}},
			{Name: name + "-2", Locality: topology.Locality{Region: region, Zone: region + "b"}},
		}}
	}
	return &topology.Topology{Clusters: []topology.Cluster{
		cluster("primary", "us-east-1"), cluster("west", "us-west-2"), cluster("eu", "eu-west-1"), cluster("ap", "ap-south-1"),
	}}
}

// rig is a Tracker fed by a settable RTT map, counting notifications.
type rig struct {
	mu       sync.Mutex
	rtt      map[string]time.Duration
	notifies int
	tr       *Tracker
}

func newRig(t *testing.T) *rig {
	r := &rig{}
	r.tr = &Tracker{
		RTT: func() map[string]time.Duration {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.rtt
		},
		Notify: func() { r.mu.Lock(); r.notifies++; r.mu.Unlock() },
	}
	r.tr.Snapshot(topo)() // what rulesync.Server does at each translation
	r.tr.SetPrimary("primary")
	if r.count() != 0 {
		t.Fatalf("notified before any RTT was measured")
	}
	return r
}

func (r *rig) poll(ms map[string]int) {
	m := map[string]time.Duration{}
	for c, v := range ms {
		m[c] = time.Duration(v) * time.Millisecond
	}
	r.mu.Lock()
	r.rtt = m
	r.mu.Unlock()
	r.tr.Check()
}

func (r *rig) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notifies
}

func order(ds []locality.Distance) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.To)
	}
	return strings.Join(s, ",")
}

func TestTrackerNotifiesOnOrderChangeOnly(t *testing.T) {
	r := newRig(t)
	steps := []struct {
		name   string
		rtt    map[string]int
		notify bool
		order  string
	}{
		{"first measurement", map[string]int{"west": 40, "eu": 80}, true, "us-west-2,eu-west-1"},
		{"jitter", map[string]int{"west": 43, "eu": 77}, false, "us-west-2,eu-west-1"},
		{"more jitter", map[string]int{"west": 38, "eu": 85}, false, "us-west-2,eu-west-1"},
		{"swap within the margin", map[string]int{"west": 60, "eu": 57}, false, "us-west-2,eu-west-1"},
		{"order changes", map[string]int{"west": 60, "eu": 30}, true, "eu-west-1,us-west-2"},
		{"jitter in the new order", map[string]int{"west": 58, "eu": 33}, false, "eu-west-1,us-west-2"},
		{"a region is measured", map[string]int{"west": 58, "eu": 33, "ap": 200}, true, "eu-west-1,us-west-2,ap-south-1"},
		{"a region is gone", map[string]int{"west": 58, "eu": 33}, true, "eu-west-1,us-west-2"},
		{"unknown cluster", map[string]int{"west": 58, "eu": 33, "nowhere": 1}, false, "eu-west-1,us-west-2"},
	}
	want := 0
	for _, s := range steps {
		r.poll(s.rtt)
		if s.notify {
			want++
		}
		if got := r.count(); got != want {
			t.Fatalf("%s: %d notifications, want %d", s.name, got, want)
		}
		if got := order(r.tr.Distances()); got != s.order {
			t.Fatalf("%s: order %s, want %s", s.name, got, s.order)
		}
	}
	// Translating reads the order without notifying.
	for range 3 {
		r.tr.Policy(func() locality.Policy { return locality.Policy{} })()
	}
	if got := r.count(); got != want {
		t.Errorf("reading the policy notified (%d, want %d)", got, want)
	}
}

func TestTrackerPrimaryChange(t *testing.T) {
	r := newRig(t)
	r.poll(map[string]int{"west": 40, "eu": 80, "primary": 1})
	if got := order(r.tr.Distances()); got != "us-west-2,eu-west-1" {
		t.Fatalf("order %s", got)
	}
	r.tr.SetPrimary("eu")
	if r.count() != 2 {
		t.Errorf("a new primary did not notify")
	}
	// From eu: the primary's own cluster is measured at 1ms.
	if got := order(r.tr.Distances()); got != "us-east-1,us-west-2" {
		t.Errorf("order from eu: %s", got)
	}
}

func TestPolicyPrecedence(t *testing.T) {
	r := newRig(t)
	r.poll(map[string]int{"west": 80, "eu": 30, "ap": 150})
	base := locality.Policy{
		Failover: []locality.Failover{{From: "us-east-1", To: "ap-south-1"}},
		// A configured distance wins over the measured one for its pair.
		Distances: []locality.Distance{{From: "us-west-2", To: "us-east-1", RTT: metav1.Duration{Duration: time.Millisecond}}},
	}
	p := r.tr.Policy(func() locality.Policy { return base })()
	if len(base.Distances) != 1 {
		t.Fatalf("the base policy was modified: %+v", base.Distances)
	}
	orders := locality.ComputeOrders(topo().Regions(), p.Failover, p.Distances)
	var got []string
	for _, rk := range orders["us-east-1"] {
		got = append(got, rk.Region+"/"+rk.Source)
	}
	want := "ap-south-1/explicit,us-west-2/rtt,eu-west-1/rtt"
	if strings.Join(got, ",") != want {
		t.Errorf("order from us-east-1 = %v, want %s (explicit, then RTT; the configured 1ms beats the measured 80ms)", got, want)
	}
	// Without an explicit order or RTTs, the default stays.
	empty := (&Tracker{}).Policy(func() locality.Policy { return locality.Policy{} })()
	if len(empty.Distances) != 0 {
		t.Errorf("a Tracker without RTTs gave distances %v", empty.Distances)
	}
}

func TestPollerDrivesTracker(t *testing.T) {
	ms := &metricsServer{}
	ms.set(http.StatusOK, exposition)
	hs := httptest.NewServer(ms)
	defer hs.Close()
	p := &Poller{URL: hs.URL + "/metrics"}
	var notified atomic.Int32
	tr := &Tracker{RTT: p.RTTs, Notify: func() { notified.Add(1) }}
	p.OnPoll = tr.Check
	tr.Observe(&topology.Topology{Clusters: []topology.Cluster{
		{Name: "primary", Nodes: []topology.Node{{Name: "n", Locality: topology.Locality{Region: "r0"}}}},
		{Name: "east", Nodes: []topology.Node{{Name: "n", Locality: topology.Locality{Region: "r1"}}}},
		{Name: "west", Nodes: []topology.Node{{Name: "n", Locality: topology.Locality{Region: "r2"}}}},
	}})
	tr.SetPrimary("primary")
	poll := func(body string) {
		t.Helper()
		ms.set(http.StatusOK, body)
		if _, err := p.Poll(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	poll(exposition)
	poll(strings.Replace(exposition, "0.0085", "0.0091", 1)) // jitter
	if n := notified.Load(); n != 1 || order(tr.Distances()) != "r1,r2" {
		t.Fatalf("%d notifications, order %s; want 1, r1,r2", n, order(tr.Distances()))
	}
	// east's agents get slow: west is nearer now.
	slow := strings.NewReplacer("0.0085", "0.2", "0.012", "0.25").Replace(exposition)
	poll(slow)
	if n := notified.Load(); n != 2 || order(tr.Distances()) != "r2,r1" {
		t.Errorf("%d notifications, order %s; want 2, r2,r1", n, order(tr.Distances()))
	}
}

func TestClusterRegions(t *testing.T) {
	tp := &topology.Topology{Clusters: []topology.Cluster{
		{Name: "mixed", Nodes: []topology.Node{
			{Name: "a", Locality: topology.Locality{Region: "r2"}},
			{Name: "b", Locality: topology.Locality{Region: "r1"}},
			{Name: "c", Locality: topology.Locality{Region: "r2"}},
		}},
		{Name: "tie", Nodes: []topology.Node{
			{Name: "a", Locality: topology.Locality{Region: "r9"}},
			{Name: "b", Locality: topology.Locality{Region: "r3"}},
		}},
		{Name: "unlabelled", Nodes: []topology.Node{{Name: "a"}}},
	}}
	got := ClusterRegions(tp)
	if len(got) != 2 || got["mixed"] != "r2" || got["tie"] != "r3" {
		t.Errorf("ClusterRegions = %v, want mixed=r2 (most nodes), tie=r3 (first by name)", got)
	}
}

// TestServerFailoverFollowsRTT wires a Tracker into a real rulesync.Server
// the way meshfleet locality does and checks the generated failover target.
func TestServerFailoverFollowsRTT(t *testing.T) {
	r := newRig(t)
	tp := topo()
	svc := topology.Service{Namespace: "default", Name: "echo", Hostname: "echo.default.svc.cluster.local"}
	for _, c := range tp.Clusters {
		svc.Endpoints = append(svc.Endpoints, topology.EndpointGroup{Cluster: c.Name, Locality: c.Nodes[0].Locality, Ready: 1})
	}
	tp.Services = []topology.Service{svc}
	// No API server: the server translates, and writes nothing until it runs.
	srv, err := rulesync.New(rulesync.Options{
		Config:   &rest.Config{Host: "https://127.0.0.1:1"},
		Members:  func() map[string]bool { return nil },
		Snapshot: r.tr.Snapshot(func() *topology.Topology { return tp.DeepCopy() }),
		Policy:   r.tr.Policy(func() locality.Policy { return locality.Policy{} }),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	target := func() string {
		t.Helper()
		if err := srv.Sync(t.Context(), time.Now()); err != nil {
			t.Fatal(err)
		}
		for _, d := range srv.State().Decisions {
			for _, f := range d.Rule.Spec.GetTrafficPolicy().GetLoadBalancer().GetLocalityLbSetting().GetFailover() {
				if f.GetFrom() == "us-east-1" {
					return f.GetTo()
				}
			}
		}
		return ""
	}
	// The default order puts us-west-2 first (longest common prefix).
	r.poll(map[string]int{"west": 90, "eu": 20, "ap": 150})
	if got := target(); got != "eu-west-1" {
		t.Errorf("failover from us-east-1 = %q, want eu-west-1 (nearest by RTT)", got)
	}
	r.poll(map[string]int{"west": 15, "eu": 20, "ap": 150})
	if got := target(); got != "us-west-2" {
		t.Errorf("failover from us-east-1 = %q, want us-west-2 after the RTTs changed", got)
	}
	if r.count() != 2 {
		t.Errorf("%d notifications, want 2", r.count())
	}
}

// TestPromHTTP reads what promhttp serves (as meshfleet tunnel server does)
// for a gauge shaped like the tunnel's.
func TestPromHTTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricAgentRTT, Help: "h"}, []string{"cluster", "agent"})
	reg.MustRegister(g)
	g.WithLabelValues("east", "a").Set(0.02)
	g.WithLabelValues("east", "b").Set(0.015)
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	p := &Poller{URL: hs.URL}
	if _, err := p.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := p.RTTs(); len(got) != 1 || got["east"] != 15*time.Millisecond {
		t.Errorf("RTTs() = %v, want east=15ms", got)
	}
}
