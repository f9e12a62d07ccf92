package tunnel

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
)

// serveConnect accepts an agent: it checks the agent's certificate against
// the cluster it claims, switches the connection to a yamux session and
// registers it.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	cluster, id := r.Header.Get(headerCluster), r.Header.Get(headerAgentID)
	reject := func(code int, reason, msg string) {
		s.metrics.agentRejections.WithLabelValues(reason).Inc()
		s.log.Warn("agent rejected", "reason", reason, "cluster", cluster, "agent", id, "remote", r.RemoteAddr, "error", msg)
		http.Error(w, msg, code)
	}
	switch {
	case r.URL.Path != ConnectPath:
		http.Error(w, fmt.Sprintf("not found: agents connect on %s", ConnectPath), http.StatusNotFound)
		return
	case !s.active.Load():
		reject(http.StatusServiceUnavailable, "standby", "this tunnel server is a standby; connect to the active one (the holder of the tunnel Lease)")
		return
	case r.TLS == nil || len(r.TLS.VerifiedChains) == 0:
		reject(http.StatusUnauthorized, "unauthenticated", "no client certificate: an agent must present its agent certificate, which chains to the mesh root")
		return
	case !headerHasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), upgradeProtocol):
		reject(http.StatusBadRequest, "bad_request", fmt.Sprintf("expected an Upgrade to %s", upgradeProtocol))
		return
	case !agentIDRE.MatchString(id):
		reject(http.StatusBadRequest, "bad_request", fmt.Sprintf("header %s %q is not an agent ID: 1 to 63 letters, digits, '.', '_' or '-' (the pod name)", headerAgentID, truncate(id, 80)))
		return
	}
	if err := verifyAgentChains(r.TLS.VerifiedChains, cluster); err != nil {
		reject(http.StatusForbidden, "forbidden", err.Error())
		return
	}
	if !s.opts.Clusters.Has(cluster) {
		reason := unknownClusterMessage(cluster)
		if !s.opts.Clusters.Synced() {
			reason = "the server has not yet read the primary's RemoteIstios; retry shortly"
		}
		reject(http.StatusForbidden, "unknown_cluster", reason)
		return
	}
	if !s.agents.hasRoom(cluster, id, s.opts.MaxAgentsPerCluster) {
		reject(http.StatusTooManyRequests, "too_many_agents", fmt.Sprintf("cluster %q already has %d agents connected, the most this server accepts; run fewer agent replicas or raise the server's limit", cluster, s.opts.MaxAgentsPerCluster))
		return
	}

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		reject(http.StatusInternalServerError, "bad_request", fmt.Sprintf("cannot take over the connection: %v", err))
		return
	}
	_ = conn.SetDeadline(time.Time{})
	_, err = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + upgradeProtocol + "\r\n\r\n")
	if err == nil {
		err = brw.Flush()
	}
	if err != nil {
		conn.Close()
		s.log.Warn("agent handshake failed", "cluster", cluster, "agent", id, "remote", r.RemoteAddr, "error", err)
		return
	}
	// The server opens every stream; the agent may open none, so one
	// slot of backlog is enough to notice the first and close the session.
	mux, err := yamux.Client(newCoalescingConn(withBuffered(conn, brw.Reader)), yamuxConfig(s.opts.StreamWindow, 1, s.log))
	if err != nil {
		conn.Close()
		s.log.Error("agent session setup failed", "cluster", cluster, "agent", id, "error", err)
		return
	}
	sess := newAgentSession(cluster, id, r.RemoteAddr, mux, s.opts.MaxStreamsPerAgent)
	if !s.addSession(sess) {
		// Another agent of the cluster took the last slot meanwhile.
		s.metrics.agentRejections.WithLabelValues("too_many_agents").Inc()
		s.log.Warn("agent rejected", "reason", "too_many_agents", "cluster", cluster, "agent", id, "remote", r.RemoteAddr)
		return
	}
	go s.refuseAgentStreams(sess)
	go s.watchSession(sess)
}

// refuseAgentStreams closes the session as soon as the agent opens a
// stream: only the server opens streams, and streams nobody accepts would
// hold memory.
func (s *Server) refuseAgentStreams(sess *agentSession) {
	st, err := sess.mux.AcceptStream()
	if err != nil {
		return // the session ended
	}
	_ = st.Close()
	s.metrics.agentRejections.WithLabelValues("agent_opened_stream").Inc()
	s.log.Warn("agent opened a stream, which only the server may do; closing its session", "cluster", sess.cluster, "agent", sess.id, "remote", sess.remote)
	sess.close()
}

// addSession registers sess, replacing an older session of the same agent;
// it closes sess and returns false if the cluster is full or was removed
// meanwhile.
func (s *Server) addSession(sess *agentSession) bool {
	old, ok := s.agents.add(sess, s.opts.MaxAgentsPerCluster)
	if !ok {
		sess.close()
		return false
	}
	if old != nil {
		old.close()
		s.metrics.agentRTT.DeleteLabelValues(old.cluster, old.id)
	}
	// A cluster removed while the agent was connecting keeps no session.
	if !s.opts.Clusters.Has(sess.cluster) {
		s.agents.remove(sess)
		sess.close()
		return true
	}
	// A server that lost the Lease meanwhile keeps no agents.
	if !s.active.Load() {
		s.agents.remove(sess)
		sess.close()
		return true
	}
	s.metrics.agentConnections.WithLabelValues(sess.cluster).Inc()
	s.metrics.agents.WithLabelValues(sess.cluster).Set(float64(s.agents.count(sess.cluster)))
	s.log.Info("agent connected", "cluster", sess.cluster, "agent", sess.id, "remote", sess.remote)
	return true
}

// watchSession measures the RTT to the agent every PingInterval and
// unregisters the session when it ends.
func (s *Server) watchSession(sess *agentSession) {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	ping := func() bool {
		rtt, err := sess.ping(pingTimeout)
		if err != nil {
			if !sess.mux.IsClosed() {
				s.log.Warn("agent ping failed; closing its session", "cluster", sess.cluster, "agent", sess.id, "error", err)
			}
			return false
		}
		sess.rttNanos.Store(int64(rtt))
		s.metrics.agentRTT.WithLabelValues(sess.cluster, sess.id).Set(rtt.Seconds())
		return true
	}
	for ok := ping(); ok; {
		select {
		case <-sess.mux.CloseChan():
			ok = false
		case <-t.C:
			ok = ping()
		}
	}
	sess.close()
	if s.agents.remove(sess) {
		s.forgetSession(sess)
	}
}

// forgetSession updates the metrics after sess left the registry.
func (s *Server) forgetSession(sess *agentSession) {
	s.metrics.agentRTT.DeleteLabelValues(sess.cluster, sess.id)
	s.metrics.agents.WithLabelValues(sess.cluster).Set(float64(s.agents.count(sess.cluster)))
	s.log.Info("agent disconnected", "cluster", sess.cluster, "agent", sess.id, "remote", sess.remote,
		"connected_for", time.Since(sess.connected).Round(time.Millisecond).String())
}

// agentIDRE is what an agent ID may be: it becomes a metric label and a
// log field.
var agentIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// headerHasToken reports whether the comma-separated header name in h holds
// token, ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// bufferedConn is a net.Conn whose first bytes come from a bufio.Reader that
// read ahead during the HTTP handshake.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// withBuffered returns conn, reading first what r has buffered.
func withBuffered(conn net.Conn, r *bufio.Reader) net.Conn {
	if r == nil || r.Buffered() == 0 {
		return conn
	}
	return &bufferedConn{Conn: conn, r: r}
}
