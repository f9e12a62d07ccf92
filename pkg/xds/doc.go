// Package xds is the serving stage of the locality pipeline: it debounces
// topology changes (a lone change is pushed at once, the burst behind it is
// coalesced), runs pkg/locality's translation and serves the
// resulting DestinationRules to istiod over MCP-over-xDS, on
// github.com/envoyproxy/go-control-plane's ADS server.
//
// What istiod expects (read from istio.io/istio pkg/adsc and
// pilot/pkg/bootstrap/configcontroller.go, and checked against the real
// istiod in tests/e2e): a MeshConfig configSources entry "xds://host:port"
// makes istiod dial plain text and open one state-of-the-world ADS stream
// with one request per config type; type URLs are "<group>/<version>/<Kind>"
// (e.g. networking.istio.io/v1/DestinationRule) plus core/v1alpha1/MeshConfig.
// Every resource is an istio.io/api/mcp/v1alpha1.Resource whose
// Metadata.Name is "namespace/name" and whose Body is an Any holding the
// spec (istio.networking.v1alpha3.DestinationRule). Each response must hold
// the type's full set: istiod deletes what a response leaves out. istiod
// becomes ready only when every requested type has been answered, so types
// this server does not produce are answered with empty responses.
//
// Incremental: each resource's Metadata.Version is a hash of its content;
// istiod updates (and pushes to proxies) only the configs whose version
// changed, so a change to one service costs one config update in istiod
// even though the ADS response repeats the unchanged resources. A push
// happens only when some resource changed.
//
// Why a cache of our own behind go-control-plane's server: the snapshot
// cache only knows Envoy's type URLs, and the linear cache sends only the
// changed resources for types other than LDS/CDS, which istiod would take as
// deletions. This cache also (1) never blocks the stream's goroutine (the
// server's per-stream response channel holds 10 responses, istiod asks for
// 16 types at once), (2) holds at most one outstanding response per stream
// and type — the latest state, not every event — and (3) backs off after a
// NACK (DESIGN.md: go-control-plane otherwise re-sends a NACKed resource in
// a tight loop).
package xds
