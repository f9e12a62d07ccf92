package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// agentSession is the server's side of one connected agent: the yamux
// session and an HTTP/1.1 transport whose connections are streams in it.
type agentSession struct {
	cluster   string
	id        string
	remote    string
	connected time.Time
	mux       *yamux.Session
	transport *http.Transport

	inflight atomic.Int64
	served   atomic.Uint64
	rttNanos atomic.Int64
}

// errAgentGone marks a failure to open a stream to an agent: nothing of the
// request was sent, so it may be retried on another agent.
var errAgentGone = errors.New("agent session closed")

func newAgentSession(cluster, id, remote string, mux *yamux.Session) *agentSession {
	s := &agentSession{cluster: cluster, id: id, remote: remote, connected: time.Now(), mux: mux}
	s.transport = &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			c, err := mux.OpenStream()
			if err != nil {
				return nil, fmt.Errorf("open stream to agent %q of cluster %q: %w: %w", id, cluster, errAgentGone, err)
			}
			return c, nil
		},
		// Streams are cheap; keep enough idle ones for bursts of small
		// requests. Each idle stream costs a little memory at both ends.
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// Pass Accept-Encoding through and bodies back as they come.
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
		WriteBufferSize:    64 << 10,
		ReadBufferSize:     64 << 10,
	}
	return s
}

// rtt returns the last measured round-trip time, or 0 before the first.
func (s *agentSession) rtt() time.Duration { return time.Duration(s.rttNanos.Load()) }

// close ends the session and every stream in it.
func (s *agentSession) close() {
	_ = s.mux.Close()
	s.transport.CloseIdleConnections()
}
