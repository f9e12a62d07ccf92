//go:build integration

package tunnel

// The attackers' tools of TestAttacks: a TokenReview counter, a recorder of
// what a remote API server receives, and a far link on which an agent can
// answer yamux pings before they arrive.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localcluster"
)

// countingReviews counts the TokenReviews sent to the primary.
type countingReviews struct {
	authnv1client.TokenReviewInterface
	n atomic.Int64
}

func (c *countingReviews) Create(ctx context.Context, tr *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error) {
	c.n.Add(1)
	return c.TokenReviewInterface.Create(ctx, tr, opts)
}

// headerRecorder is a reverse proxy in front of a remote's API server that
// keeps the headers of every request the agent forwards: what the remote
// receives.
type headerRecorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newHeaderRecorder(t *testing.T, c *localcluster.Cluster) *headerRecorder {
	t.Helper()
	target, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.CACertPEM)
	tlsCfg := &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}}
	h := &headerRecorder{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			h.mu.Lock()
			h.seen = append(h.seen, pr.In.Header.Clone())
			h.mu.Unlock()
			pr.SetURL(target)
		},
		Transport:     &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: false},
		FlushInterval: -1,
	}
	h.srv = httptest.NewTLSServer(rp)
	t.Cleanup(h.srv.Close)
	return h
}

// upstream is cfg (an agent's upstream) pointed at the recorder.
func (h *headerRecorder) upstream(cfg *rest.Config) *rest.Config {
	up := rest.CopyConfig(cfg)
	up.Host = h.srv.URL
	up.TLSClientConfig = rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw})}
	return up
}

func (h *headerRecorder) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = nil
}

func (h *headerRecorder) all() []http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen)
}

// slowConn delays every byte read by latency (the server→agent direction of
// a far link). When rogue is set it also writes, every 2 ms, a yamux ping
// acknowledgement for the ID after the last ping it read: the answer to a
// ping that has not arrived yet.
type slowConn struct {
	net.Conn
	chunks chan timedChunk
	buf    []byte
	rerr   error

	wmu      sync.Mutex
	out      frameParser
	in       frameParser
	lastPing atomic.Int64
	closed   chan struct{}
	once     sync.Once
}

type timedChunk struct {
	b   []byte
	at  time.Time
	err error
}

func newSlowConn(c net.Conn, latency time.Duration, rogue bool) *slowConn {
	s := &slowConn{Conn: c, chunks: make(chan timedChunk, 4096), closed: make(chan struct{})}
	s.lastPing.Store(-1)
	go func() {
		for {
			b := make([]byte, 32<<10)
			n, err := c.Read(b)
			s.chunks <- timedChunk{b: b[:n], at: time.Now().Add(latency), err: err}
			if err != nil {
				return
			}
		}
	}()
	if rogue {
		go s.answerEarly()
	}
	return s
}

func (s *slowConn) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.rerr != nil {
			return 0, s.rerr
		}
		c := <-s.chunks
		time.Sleep(time.Until(c.at))
		s.buf, s.rerr = c.b, c.err
		// What the agent reads: note the pings.
		s.in.feed(c.b, func(typ uint8, flags uint16, length uint32) {
			if typ == 2 && flags&1 != 0 {
				s.lastPing.Store(int64(length))
			}
		})
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func (s *slowConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n, err := s.Conn.Write(p)
	s.out.feed(p[:n], nil)
	return n, err
}

func (s *slowConn) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.Conn.Close()
}

// answerEarly acknowledges ping last+1 every 2 ms, between the frames the
// agent writes.
func (s *slowConn) answerEarly() {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		last := s.lastPing.Load()
		if last < 0 {
			continue
		}
		s.wmu.Lock()
		if s.out.atBoundary() {
			hdr := make([]byte, 12)
			hdr[1], hdr[3] = 2, 2 // typePing, flagACK
			binary.BigEndian.PutUint32(hdr[8:], uint32(last+1))
			_, _ = s.Conn.Write(hdr)
		}
		s.wmu.Unlock()
	}
}

// frameParser follows yamux frame boundaries in a byte stream.
type frameParser struct {
	hdr  []byte
	body int
}

func (f *frameParser) atBoundary() bool { return len(f.hdr) == 0 && f.body == 0 }

func (f *frameParser) feed(b []byte, frame func(typ uint8, flags uint16, length uint32)) {
	for len(b) > 0 {
		if f.body > 0 {
			n := min(f.body, len(b))
			f.body -= n
			b = b[n:]
			continue
		}
		need := 12 - len(f.hdr)
		n := min(need, len(b))
		f.hdr = append(f.hdr, b[:n]...)
		b = b[n:]
		if len(f.hdr) < 12 {
			return
		}
		typ, flags, length := f.hdr[1], binary.BigEndian.Uint16(f.hdr[2:4]), binary.BigEndian.Uint32(f.hdr[8:12])
		if frame != nil {
			frame(typ, flags, length)
		}
		if typ == 0 {
			f.body = int(length)
		}
		f.hdr = f.hdr[:0]
	}
}
