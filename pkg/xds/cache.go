package xds

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshfleet/meshfleet/pkg/locality"
)

// emptyVersion is the version of every type this server serves empty.
const emptyVersion = "empty"

// destinationRuleBodyType is the type URL of an MCP Resource's body holding
// a DestinationRule spec (what anypb.New would write for it).
var destinationRuleBodyType = "type.googleapis.com/" + string((&networking.DestinationRule{}).ProtoReflect().Descriptor().FullName())

// IsDestinationRuleType reports whether typeURL is an MCP type URL for
// DestinationRules (any API version istiod may ask for).
func IsDestinationRuleType(typeURL string) bool {
	return strings.HasPrefix(typeURL, "networking.istio.io/") && strings.HasSuffix(typeURL, "/DestinationRule")
}

// mcpCache is the go-control-plane cache.Cache behind the ADS server.
type mcpCache struct {
	nackBackoff time.Duration

	mu        sync.Mutex
	version   uint64
	changedAt map[string]time.Time // recent versions → when their change was first seen
	entries   map[string]entry     // "ns/name" → resource
	sorted    []*anypb.Any         // entries in name order
	watches   map[*watch]struct{}
}

type entry struct {
	hash    string
	created *timestamppb.Timestamp
	body    *anypb.Any
}

// watch is one open request of one stream for one type.
type watch struct {
	req       *cache.Request
	ch        chan cache.Response
	notBefore time.Time // NACK backoff
	timer     *time.Timer
	done      chan struct{}
	once      sync.Once
}

func (w *watch) close() { w.once.Do(func() { close(w.done) }) }

func newMCPCache(nackBackoff time.Duration) *mcpCache {
	return &mcpCache{
		nackBackoff: nackBackoff,
		changedAt:   map[string]time.Time{},
		entries:     map[string]entry{},
		watches:     map[*watch]struct{}{},
	}
}

func (c *mcpCache) versionString() string { return strconv.FormatUint(c.version, 10) }

// update replaces the set of DestinationRules. It returns the names that
// changed (added, updated or removed) and the new version; nothing changes
// and no push happens if the set is the same.
func (c *mcpCache) update(rules []*locality.Rule, changedAt time.Time) (changed []string, version string, err error) {
	next := make(map[string]entry, len(rules))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rules {
		name := r.Metadata.Namespace + "/" + r.Metadata.Name
		// The spec is marshalled once: its bytes give the content hash and
		// become the MCP body as they are.
		spec, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Spec)
		if err != nil {
			return nil, "", fmt.Errorf("marshalling DestinationRule %s: %w", name, err)
		}
		hash := contentHash(spec, r.Metadata.Labels, r.Metadata.Annotations)
		old, ok := c.entries[name]
		if ok && old.hash == hash {
			next[name] = old
			continue
		}
		created := timestamppb.New(changedAt)
		if ok {
			created = old.created
		}
		res, err := anypb.New(&mcp.Resource{
			Metadata: &mcp.Metadata{
				Name:        name,
				Version:     hash,
				CreateTime:  created,
				Labels:      r.Metadata.Labels,
				Annotations: r.Metadata.Annotations,
			},
			Body: &anypb.Any{TypeUrl: destinationRuleBodyType, Value: spec},
		})
		if err != nil {
			return nil, "", fmt.Errorf("wrapping DestinationRule %s as an MCP resource: %w", name, err)
		}
		next[name] = entry{hash: hash, created: created, body: res}
		changed = append(changed, name)
	}
	for name := range c.entries {
		if _, ok := next[name]; !ok {
			changed = append(changed, name)
		}
	}
	if len(changed) == 0 {
		return nil, c.versionString(), nil
	}
	sort.Strings(changed)
	c.entries = next
	names := make([]string, 0, len(next))
	for n := range next {
		names = append(names, n)
	}
	sort.Strings(names)
	c.sorted = make([]*anypb.Any, len(names))
	for i, n := range names {
		c.sorted[i] = next[n].body
	}
	c.version++
	version = c.versionString()
	c.changedAt[version] = changedAt
	if len(c.changedAt) > 256 {
		for v := range c.changedAt {
			if n, _ := strconv.ParseUint(v, 10, 64); n+128 < c.version {
				delete(c.changedAt, v)
			}
		}
	}
	now := time.Now()
	for w := range c.watches {
		if IsDestinationRuleType(w.req.TypeUrl) && w.req.VersionInfo != version && !now.Before(w.notBefore) {
			c.respondLocked(w)
		}
	}
	return changed, version, nil
}

// contentHash is a short digest of a rule's marshalled spec and its
// metadata maps (in key order): the MCP resource version.
func contentHash(spec []byte, kvs ...map[string]string) string {
	h := sha256.New()
	h.Write(spec)
	var n [binary.MaxVarintLen64]byte
	put := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		io.WriteString(h, s)
	}
	for _, m := range kvs {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(m)))])
		for _, k := range slices.Sorted(maps.Keys(m)) {
			put(k)
			put(m[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// changeTime returns when the change that produced version was first seen.
func (c *mcpCache) changeTime(version string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.changedAt[version]
	return t, ok
}

// size returns the number of DestinationRules held.
func (c *mcpCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// CreateWatch answers req at once when the client's version is not the
// current one (unless req is a NACK still in its backoff), else parks it.
func (c *mcpCache) CreateWatch(req *cache.Request, _ cache.Subscription, ch chan cache.Response) (func(), error) {
	w := &watch{req: req, ch: ch, done: make(chan struct{})}
	if req.ErrorDetail != nil {
		w.notBefore = time.Now().Add(c.nackBackoff)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	current := emptyVersion
	if IsDestinationRuleType(req.TypeUrl) {
		current = c.versionString()
	}
	c.watches[w] = struct{}{}
	switch {
	case !w.notBefore.IsZero():
		w.timer = time.AfterFunc(c.nackBackoff, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if _, open := c.watches[w]; open {
				c.respondLocked(w)
			}
		})
	case req.VersionInfo != current:
		c.respondLocked(w)
	}
	return func() {
		c.mu.Lock()
		delete(c.watches, w)
		if w.timer != nil {
			w.timer.Stop()
		}
		c.mu.Unlock()
		w.close()
	}, nil
}

// respondLocked sends the current state to w and closes it. It never
// blocks: when the stream's channel is full, a goroutine waits until the
// stream takes the response or cancels the watch (at most one per stream
// and type, since the watch is answered once).
func (c *mcpCache) respondLocked(w *watch) {
	delete(c.watches, w)
	resp := &discovery.DiscoveryResponse{TypeUrl: w.req.TypeUrl, VersionInfo: emptyVersion}
	if IsDestinationRuleType(w.req.TypeUrl) {
		resp.VersionInfo = c.versionString()
		resp.Resources = c.sorted
	}
	out := &cache.PassthroughResponse{Request: w.req, DiscoveryResponse: resp}
	select {
	case w.ch <- out:
	default:
		go func() {
			select {
			case w.ch <- out:
			case <-w.done:
			}
		}()
	}
}

// CreateDeltaWatch is not supported: istiod's MCP client speaks
// state-of-the-world only.
func (c *mcpCache) CreateDeltaWatch(*cache.DeltaRequest, cache.Subscription, chan cache.DeltaResponse) (func(), error) {
	return nil, fmt.Errorf("delta xDS is not served; istiod's MCP client uses state-of-the-world ADS")
}

// Fetch is not supported (REST xDS).
func (c *mcpCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, fmt.Errorf("fetch is not served; use ADS")
}
