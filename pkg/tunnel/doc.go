// Package tunnel lets the primary cluster's components reach the Kubernetes
// API servers of remote clusters that accept no inbound connections.
//
// An Agent runs inside each remote cluster and dials out, over mutual TLS, to
// the Server in the primary. The agent's certificate names its cluster (see
// AgentIdentityURI); the server accepts it only if the certificate chains to
// the mesh root and every cluster named in the chain is the cluster the agent
// claims. The connection is then switched (HTTP/1.1 Upgrade) to a yamux
// session that the server multiplexes requests over.
//
// The server serves every connected cluster at https://<server>/clusters/<name>/,
// usable as the server: of a kubeconfig. For each request it
//
//  1. authenticates the caller — a client certificate signed by the configured
//     client CA, or a bearer token checked with a TokenReview against the
//     primary — and answers 401 otherwise;
//  2. drops the caller's Authorization header and sets Impersonate-User,
//     -Group, -Uid and -Extra-* to the caller's identity;
//  3. picks the cluster's agent with the fewest requests in flight, opens a
//     yamux stream to it and writes the request there as plain HTTP/1.1;
//  4. writes one audit log line (cluster, user, verb, resource, code,
//     duration) and updates the meshfleet_tunnel_* metrics.
//
// The agent serves HTTP/1.1 on the streams it accepts and forwards each
// request to its API server with its own service account credentials, so
// the remote cluster's RBAC decides what the impersonated caller may do. The
// server holds no credentials for any remote cluster.
//
// # Why yamux
//
// The transport is github.com/hashicorp/yamux (used by Consul, Nomad, Vault
// and Terraform's plugin protocol; small, no dependencies, stable wire
// format). It was chosen over the alternatives because:
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
//   - Session.Ping gives the server→agent round-trip time that Server.RTT
//     exposes (timed around the whole call: yamux's own figure starts after
//     the write and can miss a fast reply), and keep-alives detect a dead
//     agent.
//   - QUIC (quic-go) would avoid TCP head-of-line blocking on lossy links
//     but needs UDP egress, which private networks often block, while
//     outbound TCP/443 is nearly always allowed.
//
// # High availability
//
// Several agents may serve one cluster; the server spreads requests over
// them (fewest in flight first) and retries a request on another agent when
// its stream cannot be opened, so a dead agent fails no new request. Several
// servers may run; with LeaseOptions only the holder of a coordination.k8s.io
// Lease accepts agents and requests, standbys answer 503, and an agent given
// several server addresses moves on to the next one.
package tunnel
