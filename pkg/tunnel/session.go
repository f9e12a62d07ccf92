package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
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
	pool      *connPool

	// streams counts the streams open to the agent (in use or idle in the
	// transport's pool); maxStreams bounds it.
	streams    atomic.Int64
	maxStreams int64

	inflight atomic.Int64
	served   atomic.Uint64
	rttNanos atomic.Int64
}

var (
	// errAgentGone marks a failure to open a stream to an agent: nothing of
	// the request was sent, so it may be retried on another agent.
	errAgentGone = errors.New("agent session closed")
	// errAgentBusy marks an agent at its stream limit: nothing was sent,
	// so another agent may take the request.
	errAgentBusy = errors.New("agent at its limit of open streams")
)

func newAgentSession(cluster, id, remote string, mux *yamux.Session, maxStreams int) *agentSession {
	s := &agentSession{cluster: cluster, id: id, remote: remote, connected: time.Now(), mux: mux, maxStreams: int64(maxStreams)}
	s.pool = &connPool{
		dial: func(context.Context) (net.Conn, error) {
			c, err := s.openStream()
			if errors.Is(err, errAgentBusy) {
				// Idle connections of the Transport hold slots too.
				s.transport.CloseIdleConnections()
				c, err = s.openStream()
			}
			return c, err
		},
		gone: func() error {
			if mux.IsClosed() {
				return fmt.Errorf("open stream to agent %q of cluster %q: %w", id, cluster, errAgentGone)
			}
			return nil
		},
		name: fmt.Sprintf("tunnel stream to agent %q of cluster %q", id, cluster),
	}
	s.transport = &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			c, err := s.openStream()
			if errors.Is(err, errAgentBusy) && s.pool.dropIdle() {
				c, err = s.openStream()
			}
			return c, err
		},
		// Streams are cheap; keep enough idle ones for bursts of small
		// requests. Each idle stream costs a little memory at both ends.
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// Pass Accept-Encoding through and bodies back as they come.
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
		// Per stream, idle ones included: kept small (see copyBufferSize).
		WriteBufferSize: 16 << 10,
		ReadBufferSize:  16 << 10,
	}
	return s
}

// openStream opens a stream to the agent within its stream limit.
func (s *agentSession) openStream() (net.Conn, error) {
	if s.streams.Add(1) > s.maxStreams {
		s.streams.Add(-1)
		return nil, fmt.Errorf("open stream to agent %q of cluster %q: %w (%d)", s.id, s.cluster, errAgentBusy, s.maxStreams)
	}
	c, err := s.mux.OpenStream()
	if err != nil {
		s.streams.Add(-1)
		return nil, fmt.Errorf("open stream to agent %q of cluster %q: %w: %w", s.id, s.cluster, errAgentGone, err)
	}
	return &countedStream{Conn: c, release: func() { s.streams.Add(-1) }}, nil
}

// roundTrip sends req to the agent: bodyless GETs and HEADs on pooled
// streams from the caller's goroutine (connPool), the rest through the
// HTTP/1.1 Transport.
//
// An agent that sent GoAway (it is stopping) takes no new request, not
// even on a stream kept idle: it fails as errAgentGone, which the caller
// takes to another agent.
func (s *agentSession) roundTrip(req *http.Request) (*http.Response, error) {
	if s.mux.RemoteGoAway() {
		s.transport.CloseIdleConnections()
		s.pool.closeIdle()
		return nil, fmt.Errorf("agent %q of cluster %q is stopping: %w", s.id, s.cluster, errAgentGone)
	}
	if direct(req) {
		return s.pool.roundTrip(req)
	}
	return s.transport.RoundTrip(req)
}

// countedStream releases its slot of the agent's stream limit once closed.
type countedStream struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedStream) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// rtt returns the last measured round-trip time, or 0 before the first.
func (s *agentSession) rtt() time.Duration { return time.Duration(s.rttNanos.Load()) }

// close ends the session and every stream in it.
func (s *agentSession) close() {
	_ = s.mux.Close()
	s.transport.CloseIdleConnections()
	s.pool.closeIdle()
}

// The ping exchange: the server sends a random nonce on a stream, and the
// agent must send it back. yamux's own pings carry sequential IDs, which an
// agent can answer before they arrive and so fake a low RTT (and pull
// failover traffic to its cluster); a nonce cannot be answered before it
// is read.
const (
	pingHost    = "meshfleet-ping.internal"
	pingPath    = "/meshfleet.io/ping"
	pingTimeout = 10 * time.Second
	nonceBytes  = 16
)

// ping measures one round trip to the agent with a fresh nonce, on a
// stream of its own: outside the transport's pool and the stream limit, so
// that a busy agent is still measured (and not taken for a dead one).
func (s *agentSession) ping(timeout time.Duration) (time.Duration, error) {
	nonce := make([]byte, nonceBytes)
	_, _ = rand.Read(nonce)
	want := []byte(hex.EncodeToString(nonce))
	req, err := http.NewRequest(http.MethodPost, "http://"+pingHost+pingPath, bytes.NewReader(want))
	if err != nil {
		return 0, err
	}
	req.Close = true
	st, err := s.mux.OpenStream()
	if err != nil {
		return 0, fmt.Errorf("ping: open a stream: %w", err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	if err := req.Write(st); err != nil {
		return 0, fmt.Errorf("ping: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(st), req)
	if err != nil {
		return 0, fmt.Errorf("ping: read the answer: %w", err)
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, 2*nonceBytes+1))
	rtt := time.Since(start)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("ping: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		return 0, fmt.Errorf("ping: the agent answered %d %q, not the nonce sent", resp.StatusCode, truncate(string(got), 40))
	}
	return rtt, nil
}

// servePing answers the server's ping on the agent's side.
func servePing(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 2*nonceBytes+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = w.Write(b)
}
