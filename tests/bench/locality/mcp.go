//go:build e2e

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	mcp "istio.io/api/mcp/v1alpha1"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// mcpServer serves DestinationRules to istiod over MCP-over-xDS, the
// channel istiod's `configSources: - address: xds://…` opens (Istio's
// pkg/adsc): one ADS stream on which istiod subscribes to every config type
// it reads, plus MeshConfig; each resource is an
// Any(istio.mcp.v1alpha1.Resource{Metadata.Name: "ns/name", Body:
// Any(spec)}), and each response replaces the type's whole set. It answers
// every type it is asked for (empty but for DestinationRules: istiod is
// not ready before every subscribed type was answered), whatever the type
// URL's version, so it needs no copy of Istio's schema.
type mcpServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	lis  net.Listener
	grpc *grpc.Server

	mu      sync.Mutex
	version int
	drs     []*anypb.Any
	streams map[chan struct{}]bool
	// served receives the time of each DestinationRule response sent.
	served chan time.Time
	// changedAt is when the feed's watcher first reported a change not yet
	// served (UnixNano, 0: none); compute is how long the last change took
	// from there to the rules handed to Set.
	changedAt, compute atomic.Int64
}

func isDestinationRule(typeURL string) bool { return strings.HasSuffix(typeURL, "/DestinationRule") }

func startMCPServer() (*mcpServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("MCP server: %w", err)
	}
	s := &mcpServer{lis: lis, grpc: grpc.NewServer(grpc.MaxSendMsgSize(256 << 20)), streams: map[chan struct{}]bool{}, served: make(chan time.Time, 1024)}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(lis) }()
	return s, nil
}

// Addr is the address for istiod's configSources.
func (s *mcpServer) Addr() string { return s.lis.Addr().String() }

func (s *mcpServer) Stop() { s.grpc.Stop() }

// Set replaces the DestinationRules served and pushes them to every stream.
func (s *mcpServer) Set(rules []*locality.Rule) error {
	res := make([]*anypb.Any, 0, len(rules))
	for _, r := range rules {
		body, err := anypb.New(r.Spec)
		if err != nil {
			return fmt.Errorf("rule %s: %w", r.Metadata.Name, err)
		}
		h, err := rulesync.Hash(r)
		if err != nil {
			return fmt.Errorf("rule %s: %w", r.Metadata.Name, err)
		}
		a, err := anypb.New(&mcp.Resource{Metadata: &mcp.Metadata{
			Name: r.Metadata.Namespace + "/" + r.Metadata.Name, Version: h, Labels: r.Metadata.Labels, Annotations: r.Metadata.Annotations,
		}, Body: body})
		if err != nil {
			return fmt.Errorf("rule %s: %w", r.Metadata.Name, err)
		}
		res = append(res, a)
	}
	s.mu.Lock()
	s.drs = res
	s.version++
	for ch := range s.streams {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	return nil
}

// StreamAggregatedResources answers each type's first request on the stream, and sends
// DestinationRules again on every Set.
func (s *mcpServer) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	changed := make(chan struct{}, 1)
	s.mu.Lock()
	s.streams[changed] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, changed)
		s.mu.Unlock()
	}()
	reqs := make(chan *discoveryv3.DiscoveryRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			reqs <- req
		}
	}()
	var drType string
	sent := -1
	answered := map[string]bool{}
	send := func(typeURL string) error {
		resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL}
		s.mu.Lock()
		v := s.version
		if isDestinationRule(typeURL) {
			resp.Resources = s.drs
			sent = v
		}
		s.mu.Unlock()
		resp.VersionInfo = strconv.Itoa(v)
		resp.Nonce = strconv.Itoa(v) + "-" + typeURL
		if err := stream.Send(resp); err != nil {
			return err
		}
		if isDestinationRule(typeURL) {
			select {
			case s.served <- time.Now():
			default:
			}
		}
		return nil
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		case req := <-reqs:
			if req.ErrorDetail != nil {
				fmt.Fprintf(os.Stderr, "MCP: istiod rejected %s: %s\n", req.TypeUrl, req.ErrorDetail.Message)
			}
			if answered[req.TypeUrl] {
				continue // an ACK or NACK (istiod's first requests carry a nonce too)
			}
			answered[req.TypeUrl] = true
			if isDestinationRule(req.TypeUrl) {
				drType = req.TypeUrl
			}
			if err := send(req.TypeUrl); err != nil {
				return err
			}
		case <-changed:
			s.mu.Lock()
			v := s.version
			s.mu.Unlock()
			if drType != "" && v != sent {
				if err := send(drType); err != nil {
					return err
				}
			}
		}
	}
}

// mcpFeed computes the rules the way the locality server does (its own
// topology watcher of the same clusters → locality.TranslateDelta →
// rulesync.Place → rulesync.Group), without the API write, and serves
// each change over MCP as soon as the watcher reports it (no debounce of
// its own; the server's is PILOT-like quiet-period batching, see
// rulesync.Server).
func mcpFeed(ctx context.Context, s *mcpServer, cfgs map[string]*rest.Config, groupMin int, policy func() locality.Policy) error {
	notify := make(chan struct{}, 1)
	w, err := topology.NewWatcher(cfgs, topology.WatcherOptions{ConfigCluster: "c1", OnChange: func() {
		s.changedAt.CompareAndSwap(0, time.Now().UnixNano())
		select {
		case notify <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		return err
	}
	w.Start(ctx)
	if err := w.WaitForSync(ctx); err != nil {
		return err
	}
	var prev *locality.Result
	resync := func() error {
		from := s.changedAt.Swap(0)
		t, d := w.Changes()
		var res *locality.Result
		var err error
		if prev == nil {
			res, err = locality.Translate(t, policy())
		} else {
			res, _, err = locality.TranslateDelta(prev, t, policy(), d)
		}
		if err != nil {
			return err
		}
		prev = res
		_, rules, err := rulesync.Group(rulesync.Place(res, "istio-system"), groupMin)
		if err != nil {
			return err
		}
		if from != 0 {
			s.compute.Store(time.Now().UnixNano() - from)
		}
		return s.Set(rules)
	}
	if err := resync(); err != nil {
		return err
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-notify:
				if err := resync(); err != nil {
					fmt.Fprintln(os.Stderr, "MCP feed:", err)
				}
			}
		}
	}()
	return nil
}

// measureMCP records, for a change made at t0, when the MCP server served
// its rules and when the MCP-fed istiod received and pushed them.
func (p *pushTimes) measureMCP(m *mcpIstiod, t0 time.Time) {
	if m == nil {
		return
	}
	s, ilog := m.s, m.log
	var at time.Time
	select {
	case at = <-s.served:
		p.written = append(p.written, at.Sub(t0))
		p.compute = append(p.compute, time.Duration(s.compute.Load()))
	case <-time.After(changeTimeout()):
		p.fail(fmt.Errorf("MCP: no rules served within %v", changeTimeout()))
		return
	}
	pushed, window, err := ilog.pushedFor(t0, "DestinationRule", changeTimeout())
	if err != nil {
		p.fail(fmt.Errorf("MCP: %w", err))
		return
	}
	p.hop = append(p.hop, pushed.Add(-window).Sub(at))
	if err := p.record(ilog, t0, pushed, window); err != nil {
		p.fail(fmt.Errorf("MCP: %w", err))
	}
}

// prepareMCP forgets what was served and logged before a change.
func prepareMCP(m *mcpIstiod) error {
	if m == nil {
		return nil
	}
	for len(m.s.served) > 0 {
		<-m.s.served
	}
	return m.log.skip()
}

// mcpIstiod is the second istiod and the MCP server it reads.
type mcpIstiod struct {
	s   *mcpServer
	log *istiodLog
}
