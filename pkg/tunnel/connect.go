package tunnel

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
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
		reject(http.StatusUnauthorized, "unauthenticated", "no client certificate: an agent must present a certificate chaining to the mesh root (--tls-cert-file)")
		return
	case !headerHasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), upgradeProtocol):
		reject(http.StatusBadRequest, "bad_request", fmt.Sprintf("expected an Upgrade to %s", upgradeProtocol))
		return
	case id == "":
		reject(http.StatusBadRequest, "bad_request", fmt.Sprintf("header %s is empty: every agent needs an ID", headerAgentID))
		return
	}
	if err := verifyAgentChains(r.TLS.VerifiedChains, cluster); err != nil {
		reject(http.StatusForbidden, "forbidden", err.Error())
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
	mux, err := yamux.Client(withBuffered(conn, brw.Reader), yamuxConfig(s.opts.StreamWindow, s.log))
	if err != nil {
		conn.Close()
		s.log.Error("agent session setup failed", "cluster", cluster, "agent", id, "error", err)
		return
	}
	sess := newAgentSession(cluster, id, r.RemoteAddr, mux)
	s.addSession(sess)
	go s.watchSession(sess)
}

// addSession registers sess, replacing an older session of the same agent.
func (s *Server) addSession(sess *agentSession) {
	if old := s.agents.add(sess); old != nil {
		old.close()
		s.metrics.agentRTT.DeleteLabelValues(old.cluster, old.id)
	}
	// A server that lost the Lease meanwhile keeps no agents.
	if !s.active.Load() {
		s.agents.remove(sess)
		sess.close()
		return
	}
	s.metrics.agentConnections.WithLabelValues(sess.cluster).Inc()
	s.metrics.agents.WithLabelValues(sess.cluster).Set(float64(s.agents.count(sess.cluster)))
	s.log.Info("agent connected", "cluster", sess.cluster, "agent", sess.id, "remote", sess.remote)
}

// watchSession measures the RTT to the agent every PingInterval and
// unregisters the session when it ends.
func (s *Server) watchSession(sess *agentSession) {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	ping := func() bool {
		// yamux starts its clock only once the ping is written, so a reply
		// that arrives before its goroutine runs again reads as a few µs:
		// time the whole exchange instead.
		start := time.Now()
		_, err := sess.mux.Ping()
		rtt := time.Since(start)
		if err != nil {
			s.log.Warn("agent ping failed; closing its session", "cluster", sess.cluster, "agent", sess.id, "error", err)
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
