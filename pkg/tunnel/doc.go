// Package tunnel lets the primary cluster's components reach the Kubernetes
// API servers of remote clusters that accept no inbound connections.
//
// An Agent runs inside each remote cluster and dials out, over mutual TLS, to
// the Server in the primary. The agent's certificate names its cluster (see
// AgentIdentityURI); the server accepts it only if the certificate chains to
// the agent CA bundle, every cluster named in the chain is the cluster the
// agent claims, the cluster is in the server's ClusterSet (the clusters of
// the primary's RemoteIstios, RemoteIstioClusters) and the cluster has fewer
// than MaxAgentsPerCluster agents. The connection is then switched (HTTP/1.1
// Upgrade) to a yamux session in which only the server opens streams: an
// agent that opens one has its session closed. When a RemoteIstio is
// deleted, its cluster's sessions are closed.
//
// The server serves every connected cluster at https://<server>/clusters/<name>/,
// usable as the server: of a kubeconfig. For each request it
//
//  1. authenticates the caller — a client certificate signed by the client
//     CA bundle, or a bearer token (Authorization, or the WebSocket
//     subprotocol base64url.bearer.authorization.k8s.io.*) checked with a
//     TokenReview against the primary for the audience TokenAudience
//     ("meshfleet-tunnel"; tokens for the API server are refused); reviews
//     of tokens not in the cache are rate-limited (429, Retry-After) — and
//     answers 401 otherwise;
//  2. authorizes the caller against the AccessPolicy: by default only
//     istiod, Kiali, the meshfleet operator and the locality server may use
//     the tunnel; everyone else gets 403 naming how to allow them;
//  3. strips every credential (Authorization, Proxy-Authorization,
//     Impersonate-*, X-Remote-*, the bearer subprotocol) and sets
//     Impersonate-User and -Group to the caller's identity mapped under the
//     policy's prefix (package mapping: "meshfleet:" + name), so that no
//     primary identity — system:masters, system:nodes, a service account —
//     is ever one of the remote's own;
//  4. picks the cluster's agent with the fewest requests in flight (not
//     one that is stopping while another is left; a watch's tie goes to
//     the agent connected last, which a rolling update replaces last; at most
//     MaxStreamsPerAgent open streams each), takes an idle yamux stream to
//     it or opens one, and writes the request there as plain HTTP/1.1;
//  5. writes one audit log line (cluster, user, groups, impersonated name,
//     verb, resource, code, duration) and updates the meshfleet_tunnel_*
//     metrics, whose labels stay bounded (known verbs, known clusters).
//
// The agent serves HTTP/1.1 on the streams it accepts and forwards each
// request to its API server with its own service account credentials,
// keeping only the server's Impersonate-User and -Group, so the remote
// cluster's RBAC decides what the impersonated caller may do; the agent's
// own RBAC lets it impersonate only the mapped names of the default identities
// (manifests/tunnel/agent.yaml). The server holds no credentials for any
// remote cluster.
//
// Certificates and CA bundles given as files (KeyPairFromFiles,
// CABundleFromFile) are re-read when they change, so rotation needs no
// restart; their expiry is exported as
// meshfleet_tunnel_{server,agent}_certificate_expiry_timestamp_seconds.
//
// # Why yamux
//
// The transport is github.com/hashicorp/yamux (used by Consul, Nomad, Vault
// and Terraform's plugin protocol; small, no dependencies, stable wire
// format), as a copy in internal/yamux whose send path writes from the
// writer's goroutine (see the data path below). It was chosen over the alternatives because:
//
//   - Each stream is a plain net.Conn. One request is one stream, written as
//     HTTP/1.1, so Upgrade requests (SPDY and WebSocket for exec, attach,
//     port-forward) need nothing special: net/http/httputil.ReverseProxy on
//     both ends hijacks the 101 response and splices the stream. HTTP/2
//     (golang.org/x/net/http2) has no Upgrade; it would need an extended
//     CONNECT (RFC 8441) side protocol for exactly the requests that are
//     hardest to get right.
//   - Per-stream flow control: each stream has its own receive window
//     (StreamWindow), so a watch or `logs -f` whose reader is slow stalls only
//     its own stream — no head-of-line blocking between requests — and the
//     data buffered for a stream is bounded by that window (the bounded
//     per-stream queue).
//   - Keep-alives detect a dead agent. The round-trip time Server.RTT
//     exposes is not yamux's ping: its IDs are sequential, so an agent can
//     acknowledge the next ping before it arrives and fake a low RTT (and
//     pull failover traffic). The server instead sends a random nonce on a
//     stream, which the agent must echo, and times the whole exchange.
//   - QUIC (quic-go) would avoid TCP head-of-line blocking on lossy links
//     but needs UDP egress, which private networks often block, while
//     outbound TCP/443 is nearly always allowed.
//
// # The data path, measured
//
// tests/bench/tunnel times direct, this tunnel and rancher/remotedialer
// side by side in one process (small GETs interleaved, so load elsewhere on
// the machine falls on all three alike). What it showed, and what was done:
//
//   - yamux's send loop writes a data frame's 12-byte header and its body
//     as two calls: over TLS, two records and two syscalls. coalescingConn
//     holds the header back and writes it with the body (framing.go).
//   - ReverseProxy with FlushInterval -1 flushes a response's headers from
//     a timer goroutine before its body, a frame of their own. Both proxies
//     use 0: ReverseProxy still flushes every write of a response with no
//     Content-Length (watches, logs -f) or of text/event-stream.
//   - The agent sent every request to the API server as an HTTP/2 stream;
//     short ones now take pooled HTTP/1.1 connections (cheaper per request:
//     no HPACK, no flow-control frames, no read-loop hand-off), and watches
//     and followed logs keep sharing HTTP/2 connections (upstreamSplit).
//   - The audit line no longer clones the request to parse it, logs with
//     typed attributes, and updates metric children looked up once per
//     (cluster, verb, code).
//   - Goroutine hand-offs (profiled with the bench's -cpuprofile and
//     -blockprofile). net/http's Transport runs a read and a write loop per
//     connection and hands each request and response between them and the
//     caller; yamux's send loop took every frame from its writer and handed
//     back the result. Bodyless GETs and HEADs — gets, lists, watches, logs:
//     nearly all Kubernetes API traffic — now go as HTTP/1.1 on pooled
//     connections from the caller's own goroutine (connPool, roundtrip.go):
//     the server's to each agent over yamux streams, and the agent's short
//     ones to its API server over TLS (watches there keep sharing HTTP/2
//     connections; a proxy, custom dialer or credential plugin in the
//     agent's configuration keeps the Transport). Requests with a body and upgrades keep the Transport:
//     it reads an early answer (a 403 to a large upload) while the body is
//     still being written, and hijacks 101 responses. And yamux writes a
//     frame from its writer's goroutine when nothing else is being written
//     (internal/yamux: hashicorp/yamux v0.1.2 with changes to its send
//     path only; wire format, windows, keep-alives and limits unchanged).
//     Its send loop, which writes the frames of writers that found the
//     connection busy, writes every frame queued by then in one write (up
//     to 16 KiB): a watch event to a thousand watchers was a thousand TLS
//     records and syscalls on the agent, one per stream.
//
// With both, on the shared 2-core machine (load 27–34; the three paths
// interleaved, so compare within a run): meshfleet's CPU per small GET went
// from 1.34× remotedialer's to 1.16–1.18×, its small-GET p50 from 1.18–1.19×
// to 1.12–1.13×, and it stays ahead on bulk (164–220 MB/s against 48–130;
// 5.5 CPU s per GB against 7.7–10.2). What meshfleet still did that
// remotedialer does not was the agent's HTTP hop: the agent parses each
// request and answer to put its own credentials on them (the server holds
// none), where remotedialer pipes bytes behind a front that holds the
// remote's credentials. The hop stays (it is what keeps the remote's
// credentials in the remote); its cost was cut:
//
//   - The agent answers short bodyless GETs and HEADs (not watches or
//     followed logs) on each stream's own goroutine (streams.go): it reads
//     the request head from the stream, parses it, applies the forwarder's
//     rewrite in place (only the server's Impersonate-User and -Group stay;
//     hop-by-hop headers, and those a Connection header names, go after the
//     impersonation was read, as in ReverseProxy), sends it on the pooled
//     connection to the API server and writes the answer back with its
//     framing (its length, or chunked and flushed piece by piece; an answer
//     cut short ends the stream rather than look whole). net/http's server
//     costs a background-read goroutine, a response writer and a proxy's
//     request clone per request; none of that is left. Everything else — a
//     body, an upgrade, a watch, a proxy subresource, HTTP/1.0, a head over 4 KiB, no
//     Impersonate-User, an API server marked down, anything that does not
//     parse — hands the stream, with the bytes already read, to the
//     http.Server and forwarder as before, so their answers are unchanged.
//   - The server forwards bodyless GETs and HEADs without ReverseProxy
//     (forwardDirect: the same rewrite and error answers, streaming answers
//     flushed as they come, a cut-short body aborted), and flushes an answer
//     of known length before the audit line is written, so the caller does
//     not wait for it.
//   - The audit line's per-caller attributes (cluster, user, groups, as,
//     auth) are formatted once per caller by a cached slog.Logger.With: the
//     line is the same, a third of its attributes are no longer formatted
//     per request.
//
// Measured (the three paths interleaved; two full runs at load 8–19 after
// a baseline at load 1–6): CPU per small GET went from 1.20× remotedialer's
// (477 µs against 399) to 1.00× (532 against 531, 550 against 552), small-GET
// p50 from 0.12 ms behind to 0.10–0.12 ms behind, bulk byte stream still
// 1.7–3× remotedialer's at 0.6× its CPU per GB; the bulk list, bound by the
// API server, is within the noise of one another (173 against 200, 240
// against 178). The p50 gap is not the tunnel's: the bench's row "direct,
// impersonating as the agent does" sends the agent's Impersonate-User and
// -Group straight to the API server and costs 0.08–0.14 ms over direct
// there (the API server authorizes each impersonated name, then the request
// under RBAC for a user who is not system:masters), which remotedialer's
// front, holding the remote's admin credentials, does not pay. Less that,
// the tunnel adds about what remotedialer adds (0.28–0.36 ms against
// 0.26–0.38). Within 0.1 ms of direct would take not impersonating, that is
// a server holding the remotes' credentials: not done.
//
// Like for like, remotedialer impersonates too. Rancher, its main user,
// sends every request of a Rancher user to a downstream cluster with
// Impersonate-User and -Group set to that user (rancher/rancher
// pkg/auth/requests/filter.go) and the token of a service account,
// cattle-impersonation-<user> in cattle-impersonation-system, allowed to
// impersonate only that user (pkg/impersonation, pkg/clusterrouter/proxy),
// over remotedialer. The bench's row "remotedialer, impersonating (as
// Rancher)" sends the same Impersonate-User and -Group as meshfleet's agent,
// with the same credentials, through remotedialer. Against it (six full
// runs, load 4–29) meshfleet's small-GET p50 is 0.025–0.051 ms behind
// (quiet machine: 1.419 against 1.368 ms, 1.412 against 1.363), its CPU per
// small GET 1.04–1.08× (532 µs against 504, 538 against 514); over the
// direct impersonating baseline the tunnel adds 0.26–0.36 ms, remotedialer
// 0.22–0.33. So meshfleet is not ahead on that row and not within 0.1 ms
// of direct. The profile (-only meshfleet -cpuprofile) has no hot spot
// left to cut: a quarter of the process's CPU
// is syscalls, then TLS and header parsing and writing on each hop.
//
// Watches do not take the agent's short path (longRunning hands them to
// the http.Server and forwarder); on the server they go through
// forwardDirect, which flushes each piece as the proxy did. "1000 watches:
// event to all" is the bench's most load-sensitive row: every event
// crosses the agent and the server in the bench's own process, three more
// goroutine hops each than direct, so under CPU contention from other
// processes it stretches: at load 15–48, interleaved with direct, 97–803 ms
// with the code from before the short-GET path (direct 41–483), 107–812
// with it (direct 41–1,738), so the short-GET path did not cause it. With
// the send loop's batching, interleaved with the code without it at load
// 22–53: 169–286 ms against 107–529; on a quiet machine 140–173 ms against
// 52–107 direct. The bench now prints "event to half" beside it (half the
// watchers had the event), which shows a uniform slowdown, not a straggler.
//
// The multiplexer stays yamux. HTTP/2 between agent and server (the server
// as client, golang.org/x/net/http2) was the other option weighed: its
// client writes a request's headers from the caller's goroutine too, but
// its server runs a serve loop that every handler's writes pass through,
// and a read loop, so the agent side would hand off more than it does now;
// and it has no Upgrade, which exec, attach and port-forward need (RFC 8441
// extended CONNECT on both ends). The one hand-off yamux had that HTTP/2
// does not, the send loop, was cheaper to remove in place. What is left per
// request is what every multiplexer has: a read loop per connection handing
// each frame to its stream's reader.
//
// # High availability
//
// Several agents may serve one cluster; the server spreads requests over
// them (fewest in flight first) and retries a request on another agent when
// its stream cannot be opened, so a dead agent fails no new request. Several
// servers may run; with LeaseOptions only the holder of a coordination.k8s.io
// Lease accepts agents and requests, standbys answer 503 (with Retry-After),
// and an agent given several server addresses moves on to the next one. In
// a cluster the holder labels its own Pod (RoleLabel) and the Services
// select it. A server or agent that is stopped drains: no new requests
// (an agent's yamux GoAway; the server then sends it none, not even on
// streams it keeps idle), those in flight finish, then its sessions close
// (drain.go).
package tunnel
