package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/tunnel/internal/yamux"
)

// streamServer serves the streams of an agent's session. Short bodyless
// GETs and HEADs (gets and lists: most of the Kubernetes API traffic) are
// answered on the stream's own goroutine: the request head is parsed,
// its credentials replaced exactly as the forwarder's proxy does (only the
// server's Impersonate-User and -Group stay), sent on a pooled connection
// to the API server, and the answer written back with its framing. Any
// other request — a body, an upgrade, a watch or followed log, a proxy
// subresource, HTTP/1.0,
// a head too large for the buffer, no Impersonate-User, an upstream
// marked down, anything that does not parse — hands the stream, with the
// bytes already read, to the agent's http.Server and forwarder for the
// rest of its life. net/http's server costs a background read goroutine,
// a response writer and a proxy's request clone per request; here there
// is none of that (doc.go, "The data path, measured").
type streamServer struct {
	fwd      *forwarder
	requests *inflight
	// ctx ends when the session closes; the short requests' upstream
	// calls use it.
	ctx context.Context
	// slow hands streams to the http.Server.
	slow *handoffListener
}

const (
	// streamHeadBuffer holds a request head; a larger one goes to the
	// http.Server. It is net/http's server's own read buffer size.
	streamHeadBuffer = 4 << 10
	// streamHeadTimeout bounds the wait for the rest of a head once its
	// first byte came (the http.Server's ReadHeaderTimeout).
	streamHeadTimeout = 30 * time.Second
	// shortRequestTimeout bounds a short request's call to the API server:
	// well past the API server's own limit for requests that are not
	// watches (its --request-timeout, one minute by default).
	shortRequestTimeout = 5 * time.Minute
)

var (
	headParsers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, streamHeadBuffer) }}
	answerBufs  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, copyBufferSize) }}
)

// serve accepts the session's streams until it closes.
func (s *streamServer) serve(mux *yamux.Session) {
	for {
		c, err := mux.Accept()
		if err != nil {
			return
		}
		go s.serveStream(c)
	}
}

// serveStream answers the requests on c, or hands c to the http.Server.
func (s *streamServer) serveStream(c net.Conn) {
	br := bufio.NewReaderSize(c, streamHeadBuffer)
	for {
		head, err := readHead(c, br)
		if err != nil {
			c.Close()
			return
		}
		req := s.shortRequest(head)
		if req == nil {
			s.slow.handOff(&prefixedConn{Conn: c, r: br})
			return
		}
		_, _ = br.Discard(len(head))
		if !s.answer(c, req) {
			c.Close()
			return
		}
	}
}

// readHead waits for the next request on c and returns its head as
// buffered in br (not consumed); nil if it does not fit in br's buffer.
func readHead(c net.Conn, br *bufio.Reader) ([]byte, error) {
	if _, err := br.Peek(1); err != nil {
		return nil, err // idle streams wait without deadline, as in the http.Server
	}
	b, _ := br.Peek(br.Buffered())
	if n := headEnd(b); n > 0 {
		return b[:n], nil // the usual case: the head came in one frame
	}
	_ = c.SetReadDeadline(time.Now().Add(streamHeadTimeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	for br.Buffered() < br.Size() {
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, err
		}
		b, _ := br.Peek(br.Buffered())
		if n := headEnd(b); n > 0 {
			return b[:n], nil
		}
	}
	return nil, nil
}

// headEnd returns the length of the request head at the start of b (up to
// and including the empty line, CRLF or a bare LF as net/http accepts), or
// -1 if b holds no whole head.
func headEnd(b []byte) int {
	crlf, lf := bytes.Index(b, []byte("\n\r\n")), bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf < 0 && lf < 0:
		return -1
	case lf < 0 || (crlf >= 0 && crlf < lf):
		return crlf + 3
	default:
		return lf + 2
	}
}

// shortRequest parses head and returns the request if this server answers
// it itself, nil if the http.Server is to.
func (s *streamServer) shortRequest(head []byte) *http.Request {
	if head == nil {
		return nil
	}
	pr := headParsers.Get().(*bufio.Reader)
	pr.Reset(bytes.NewReader(head))
	req, err := http.ReadRequest(pr)
	pr.Reset(nil)
	headParsers.Put(pr)
	if err != nil {
		return nil
	}
	// A proxied request (pods/…/proxy, services/…/proxy) may stream for as
	// long as its backend likes, and only the http.Server notices when the
	// tunnel server gives up on it (its background read).
	if !direct(req) || !req.ProtoAtLeast(1, 1) || req.Host == pingHost || longRunning(req) || isProxyPath(req.URL.Path) ||
		req.Header.Get("Expect") != "" || strings.TrimSpace(req.Header.Get(authnv1.ImpersonateUserHeader)) == "" ||
		!s.fwd.gate.up() {
		return nil
	}
	return req
}

// isProxyPath reports whether p is an API server proxy subresource.
func isProxyPath(p string) bool {
	return strings.HasSuffix(p, "/proxy") || strings.Contains(p, "/proxy/")
}

// answer forwards req to the API server and writes the answer on c; it
// reports whether c may carry another request.
func (s *streamServer) answer(c net.Conn, req *http.Request) bool {
	s.requests.n.Add(1)
	defer s.requests.n.Add(-1)
	f := s.fwd
	closeAfter := req.Close
	// Nothing reads the stream while the API server answers, so a caller
	// who leaves does not cancel the call as the http.Server's request
	// context would; the cap keeps a stuck API server from holding
	// streams and connections for the rest of the session.
	ctx, cancel := context.WithTimeout(s.ctx, shortRequestTimeout)
	defer cancel()
	out := req.WithContext(ctx)
	// The rewrite of the forwarder's proxy (forward.go), in place:
	// only the server's impersonation headers pass; every other credential
	// is the agent's own, added by its transport.
	imp := impersonationOf(req.Header)
	removeHopByHop(out.Header)
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		out.Header.Del(k)
	}
	stripCredentials(out.Header)
	for k, v := range imp {
		out.Header[k] = v
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // as the proxy: no Go default
	}
	(&httputil.ProxyRequest{In: req, Out: out}).SetURL(f.upstream)
	out.RequestURI, out.Close = "", false

	bw := answerBufs.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() { bw.Reset(nil); answerBufs.Put(bw) }()

	resp, err := f.transport.RoundTrip(out)
	if err != nil {
		if s.ctx.Err() != nil {
			return false
		}
		f.log.Warn("forwarding to the API server failed", "method", req.Method, "path", req.URL.Path, "error", err)
		f.gate.markDown(err)
		f.metrics.requests.WithLabelValues(strconv.Itoa(http.StatusBadGateway)).Inc()
		body := statusBody(http.StatusBadGateway, metav1.StatusReasonServiceUnavailable,
			fmt.Sprintf("tunnel agent: API server %s: %v", f.upstream.Host, err))
		h := http.Header{"Content-Type": {"application/json"}, "X-Content-Type-Options": {"nosniff"}}
		writeAnswerHead(bw, http.StatusBadGateway, h, int64(len(body)))
		_, _ = bw.Write(body)
		return bw.Flush() == nil && !closeAfter
	}
	defer resp.Body.Close()
	f.metrics.requests.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	removeHopByHop(resp.Header)
	if err := writeAnswer(bw, req.Method, resp); err != nil {
		return false
	}
	return !closeAfter
}

// writeAnswer writes resp to bw as HTTP/1.1 and flushes: with its length
// if known, chunked otherwise, each piece flushed as it comes (a streaming
// answer reaches the caller as the proxy's FlushInterval -1 would send it).
// Trailers are dropped.
func writeAnswer(bw *bufio.Writer, method string, resp *http.Response) error {
	code := resp.StatusCode
	if method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200 {
		writeAnswerHead(bw, code, resp.Header, -2)
		return bw.Flush()
	}
	if resp.ContentLength >= 0 {
		writeAnswerHead(bw, code, resp.Header, resp.ContentLength)
		n, err := io.Copy(bw, resp.Body)
		if err == nil && n != resp.ContentLength {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		return bw.Flush()
	}
	writeAnswerHead(bw, code, resp.Header, -1)
	if err := bw.Flush(); err != nil {
		return err
	}
	buf := proxyBuffers.Get()
	defer proxyBuffers.Put(buf)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			_, _ = bw.WriteString(strconv.FormatInt(int64(n), 16))
			_, _ = bw.WriteString("\r\n")
			_, _ = bw.Write(buf[:n])
			_, _ = bw.WriteString("\r\n")
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			_, _ = bw.WriteString("0\r\n\r\n")
			return bw.Flush()
		}
		if rerr != nil {
			return rerr
		}
	}
}

// writeAnswerHead writes the status line and h; length is the body's
// Content-Length, -1 for a chunked body, -2 to keep h's framing headers as
// they are (a body the answer has not: HEAD, 204, 304).
func writeAnswerHead(bw *bufio.Writer, code int, h http.Header, length int64) {
	switch {
	case length >= 0:
		h.Del("Transfer-Encoding")
		h["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	case length == -1:
		h.Del("Content-Length")
		h["Transfer-Encoding"] = []string{"chunked"}
	}
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.WriteString(strconv.Itoa(code))
	_, _ = bw.WriteString(" ")
	_, _ = bw.WriteString(http.StatusText(code))
	_, _ = bw.WriteString("\r\n")
	_ = h.Write(bw)
	_, _ = bw.WriteString("\r\n")
}

// hopHeaders are the hop-by-hop headers (RFC 9110 7.6.1) a proxy does not
// pass on, as net/http/httputil.ReverseProxy drops them.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop removes the hop-by-hop headers from h, and those that its
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// prefixedConn is a stream whose first bytes were read into r already.
type prefixedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// handoffListener gives the agent's http.Server the streams the
// streamServer hands it; it ends when the session closes (closing it
// stops nothing, so that the session outlives http.Server's Shutdown and
// its streams in flight can finish).
type handoffListener struct {
	conns  chan net.Conn
	closed <-chan struct{}
	addr   net.Addr
}

func newHandoffListener(mux *yamux.Session) *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: mux.CloseChan(), addr: mux.Addr()}
}

func (l *handoffListener) handOff(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error   { return nil }
func (l *handoffListener) Addr() net.Addr { return l.addr }
