package xds

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshfleet/meshfleet/pkg/topology"
)

const drType = "networking.istio.io/v1/DestinationRule"

// istiodTypes are the type URLs istiod's MCP client asks for (the first 16
// of them, as measured; their exact list does not matter here).
var istiodTypes = []string{
	"core/v1alpha1/MeshConfig", drType,
	"networking.istio.io/v1alpha3/EnvoyFilter", "networking.istio.io/v1/Gateway",
	"networking.istio.io/v1/ServiceEntry", "networking.istio.io/v1/Sidecar",
	"networking.istio.io/v1/VirtualService", "networking.istio.io/v1/WorkloadEntry",
	"networking.istio.io/v1/WorkloadGroup", "networking.istio.io/v1alpha3/ProxyConfig",
	"security.istio.io/v1/AuthorizationPolicy", "security.istio.io/v1/PeerAuthentication",
	"security.istio.io/v1/RequestAuthentication", "telemetry.istio.io/v1/Telemetry",
	"extensions.istio.io/v1alpha1/WasmPlugin", "networking.istio.io/v1beta1/ProxyConfig",
}

// fakeTopology is a mutable topology source.
type fakeTopology struct {
	mu sync.Mutex
	t  *topology.Topology
}

func (f *fakeTopology) get() *topology.Topology {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t.DeepCopy()
}

func (f *fakeTopology) set(t *topology.Topology) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}

func twoServices(r2Ready int) *topology.Topology {
	svc := func(name string, r2 int) topology.Service {
		return topology.Service{Namespace: "default", Name: name, Hostname: name + ".default.svc.cluster.local", Endpoints: []topology.EndpointGroup{
			{Cluster: "c1", Locality: topology.Locality{Region: "r1", Zone: "z1"}, Ready: 1},
			{Cluster: "c2", Locality: topology.Locality{Region: "r2", Zone: "z2"}, Ready: r2, NotReady: 1 - r2},
			{Cluster: "c3", Locality: topology.Locality{Region: "r3", Zone: "z3"}, Ready: 1},
		}}
	}
	return &topology.Topology{
		Services: []topology.Service{svc("a", 1), svc("b", r2Ready)},
	}
}

// rawIstiod is an ADS client that behaves like istiod's MCP client.
type rawIstiod struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discovery.DiscoveryResponse
}

func dialRaw(t *testing.T, addr string) *rawIstiod {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawIstiod{t: t, stream: stream, resps: make(chan *discovery.DiscoveryResponse, 100)}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				close(r.resps)
				return
			}
			r.resps <- m
		}
	}()
	node := &core.Node{Id: "sidecar~~istiod-c1.istio-system~istio-system.svc.cluster.local"}
	for _, typ := range istiodTypes {
		// Like istiod: even the first request carries a nonce (a timestamp).
		if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typ, ResponseNonce: time.Now().String()}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *rawIstiod) recv(timeout time.Duration) *discovery.DiscoveryResponse {
	r.t.Helper()
	select {
	case m, ok := <-r.resps:
		if !ok {
			r.t.Fatal("stream closed")
		}
		return m
	case <-time.After(timeout):
		r.t.Fatalf("no response within %v", timeout)
		return nil
	}
}

func (r *rawIstiod) ack(m *discovery.DiscoveryResponse, nack bool) {
	req := &discovery.DiscoveryRequest{TypeUrl: m.TypeUrl, ResponseNonce: m.Nonce, VersionInfo: m.VersionInfo}
	if nack {
		req.VersionInfo = ""
		req.ErrorDetail = &statuspb.Status{Code: 3, Message: "test rejects this"}
	}
	if err := r.stream.Send(req); err != nil {
		r.t.Fatal(err)
	}
}

// decodeRules decodes a DestinationRule response the way istiod does.
func decodeRules(t *testing.T, m *discovery.DiscoveryResponse) map[string]*mcp.Resource {
	out := map[string]*mcp.Resource{}
	for _, a := range m.Resources {
		res := &mcp.Resource{}
		if err := a.UnmarshalTo(res); err != nil {
			t.Fatalf("resource is not an mcp.Resource: %v", err)
		}
		if parts := strings.Split(res.Metadata.GetName(), "/"); len(parts) != 2 {
			t.Fatalf("name %q is not namespace/name", res.Metadata.GetName())
		}
		body, err := res.Body.UnmarshalNew()
		if err != nil {
			t.Fatalf("body of %s: %v", res.Metadata.Name, err)
		}
		if _, ok := body.(*networking.DestinationRule); !ok {
			t.Fatalf("body of %s is %T, want DestinationRule", res.Metadata.Name, body)
		}
		out[res.Metadata.Name] = res
	}
	return out
}

func TestServerServesIstiodMCP(t *testing.T) {
	src := &fakeTopology{t: twoServices(1)}
	reg := prometheus.NewRegistry()
	var acks sync.WaitGroup
	acks.Add(1)
	var once sync.Once
	srv, err := NewServer(Options{
		Snapshot: src.get, Registerer: reg, NACKBackoff: 400 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnAck:  func(string, time.Duration) { once.Do(acks.Done) },
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Run(ctx, l) }()

	c := dialRaw(t, l.Addr().String())
	// Every requested type is answered (istiod's readiness needs it).
	got := map[string]*discovery.DiscoveryResponse{}
	for range istiodTypes {
		m := c.recv(5 * time.Second)
		got[m.TypeUrl] = m
		c.ack(m, false)
	}
	for _, typ := range istiodTypes {
		if got[typ] == nil {
			t.Errorf("type %s was not answered", typ)
		} else if typ != drType && len(got[typ].Resources) != 0 {
			t.Errorf("type %s answered with %d resources, want none", typ, len(got[typ].Resources))
		}
	}
	first := decodeRules(t, got[drType])
	if len(first) != 2 || first["default/meshfleet-locality-a"] == nil {
		t.Fatalf("first DestinationRule response holds %v", first)
	}
	acks.Wait()

	// One service changes: one response, full set, only b's version moves.
	src.set(twoServices(0))
	srv.Notify()
	m := c.recv(5 * time.Second)
	if m.TypeUrl != drType {
		t.Fatalf("pushed %s, want %s", m.TypeUrl, drType)
	}
	second := decodeRules(t, m)
	if len(second) != 2 {
		t.Fatalf("second response holds %d rules, want the full set of 2", len(second))
	}
	if second["default/meshfleet-locality-a"].Metadata.Version != first["default/meshfleet-locality-a"].Metadata.Version {
		t.Error("unchanged rule a got a new version")
	}
	if second["default/meshfleet-locality-b"].Metadata.Version == first["default/meshfleet-locality-b"].Metadata.Version {
		t.Error("changed rule b kept its version")
	}

	// A NACK: the same version is not re-sent before the backoff.
	c.ack(m, true)
	start := time.Now()
	again := c.recv(5 * time.Second)
	if wait := time.Since(start); wait < 300*time.Millisecond {
		t.Errorf("NACKed response re-sent after %v, want the 400ms backoff", wait)
	}
	c.ack(again, false)
	if n := testutil.ToFloat64(srv.metrics.nacks.WithLabelValues(drType)); n != 1 {
		t.Errorf("meshfleet_xds_nacks_total = %v, want 1", n)
	}

	// No change, no push.
	srv.Notify()
	select {
	case m := <-c.resps:
		t.Errorf("unexpected push of %s with no change", m.TypeUrl)
	case <-time.After(300 * time.Millisecond):
	}

	if n := testutil.ToFloat64(srv.metrics.connected); n != 1 {
		t.Errorf("meshfleet_xds_connected_clients = %v, want 1", n)
	}
	if n := testutil.ToFloat64(srv.metrics.resources); n != 2 {
		t.Errorf("meshfleet_xds_resources = %v, want 2", n)
	}
	rec := httptest.NewRecorder()
	srv.DebugHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/locality?service=default/b", nil))
	if body := rec.Body.String(); !strings.Contains(body, "from r1: to r3") || !strings.Contains(body, "istiod-c1") {
		t.Errorf("debug output lacks the reason or the client:\n%s", body)
	}
}

// TestCacheNeverBlocks checks that a stream whose channel is full does not
// block the cache (istiod asks for 16 types; the server buffers 10).
func TestCacheNeverBlocks(t *testing.T) {
	c := newMCPCache(time.Second)
	ch := make(chan cache.Response, 1)
	done := make(chan struct{})
	go func() {
		for _, typ := range istiodTypes {
			if _, err := c.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: typ}, nil, ch); err != nil {
				t.Error(err)
			}
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("CreateWatch blocked on a full response channel")
	}
	for range istiodTypes {
		select {
		case <-ch:
		case <-time.After(2 * time.Second):
			t.Fatal("a response was lost")
		}
	}
}

// TestDebounce checks that a lone change is translated at once, and that
// the changes following it within Debounce are coalesced into one more.
func TestDebounce(t *testing.T) {
	const debounce = 400 * time.Millisecond
	var mu sync.Mutex
	var syncs []time.Time
	srv, err := NewServer(Options{
		Snapshot: func() *topology.Topology {
			mu.Lock()
			syncs = append(syncs, time.Now())
			mu.Unlock()
			return twoServices(1)
		},
		Debounce: debounce, MaxDebounce: 10 * debounce,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.debounceLoop(ctx)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(syncs)
	}
	waitFor := func(n int, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); count() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d translations after %v, want %d", count(), within, n)
			}
		}
	}

	start := time.Now()
	srv.Notify()
	waitFor(1, debounce/2) // the leading edge: not held for the quiet period
	for range 5 {          // a burst right behind it
		time.Sleep(20 * time.Millisecond)
		srv.Notify()
	}
	burstEnd := time.Now()
	waitFor(2, 3*debounce)
	mu.Lock()
	trailing := syncs[1]
	mu.Unlock()
	if trailing.Before(burstEnd.Add(debounce - 50*time.Millisecond)) {
		t.Errorf("the burst was translated %v after its last change, want after the %v quiet period", trailing.Sub(burstEnd), debounce)
	}
	time.Sleep(debounce)
	if n := count(); n != 2 {
		t.Errorf("%d translations for one change and a burst behind it, want 2", n)
	}
	t.Logf("leading edge %v after the change, burst %v after its last change", func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return syncs[0].Sub(start)
	}(), trailing.Sub(burstEnd))
}
