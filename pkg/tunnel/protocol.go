package tunnel

// The wire protocol between Agent and Server.
//
// The agent opens a TLS connection to the server's agent address, presents
// its client certificate and sends
//
//	GET /connect HTTP/1.1
//	Connection: Upgrade
//	Upgrade: meshfleet-tunnel/1
//	Meshfleet-Cluster: <cluster>
//	Meshfleet-Agent-Id: <agent id>
//
// The server answers 101 Switching Protocols, or an error status with a
// plain-text reason (401 no certificate, 403 the certificate is for another
// cluster, 503 standby server). After 101 the connection carries a yamux
// session in which the server opens one stream per proxied request.
const (
	// ConnectPath is the path agents upgrade on.
	ConnectPath = "/connect"
	// ClustersPathPrefix starts every proxied request path:
	// /clusters/<name>/<Kubernetes API path>.
	ClustersPathPrefix = "/clusters/"

	upgradeProtocol = "meshfleet-tunnel/1"
	headerCluster   = "Meshfleet-Cluster"
	headerAgentID   = "Meshfleet-Agent-Id"
)
