package tunnel

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// responseRecorder notes the status code and the bytes a proxied response
// writes, including both directions of an upgraded (hijacked) connection.
type responseRecorder struct {
	http.ResponseWriter
	code     int
	out      atomic.Int64
	upgraded *countingConn
}

func (r *responseRecorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *responseRecorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.out.Add(int64(n))
	return n, err
}

func (r *responseRecorder) Flush() {
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *responseRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if r.code == 0 {
		r.code = http.StatusSwitchingProtocols
	}
	r.upgraded = &countingConn{Conn: conn}
	// Bytes already buffered by the server still count as read from the
	// caller; the ReverseProxy reads them through brw.
	brw.Reader.Reset(io.MultiReader(readBuffered(brw.Reader), r.upgraded))
	brw.Writer.Reset(r.upgraded)
	return r.upgraded, brw, nil
}

func (r *responseRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// status returns the recorded status code, 200 if nothing was written.
func (r *responseRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// bytes returns the bytes received from the caller after an upgrade and the
// bytes sent to the caller.
func (r *responseRecorder) bytes() (in, out int64) {
	out = r.out.Load()
	if r.upgraded != nil {
		in += r.upgraded.in.Load()
		out += r.upgraded.out.Load()
	}
	return in, out
}

// readBuffered returns a reader over what br has already buffered.
func readBuffered(br *bufio.Reader) io.Reader {
	n := br.Buffered()
	if n == 0 {
		return eofReader{}
	}
	b, _ := br.Peek(n)
	return &bufferedBytes{b: append([]byte(nil), b...)}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type bufferedBytes struct{ b []byte }

func (b *bufferedBytes) Read(p []byte) (int, error) {
	if len(b.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.b)
	b.b = b.b[n:]
	return n, nil
}

// countingConn counts the bytes read from and written to a hijacked
// connection.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// countedBody counts the bytes of a request body as they are read.
type countedBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countBody replaces r.Body by a counting one and returns it.
func countBody(r *http.Request) *countedBody {
	cb := &countedBody{ReadCloser: r.Body}
	if r.Body == nil || r.Body == http.NoBody {
		cb.ReadCloser = http.NoBody
		return cb
	}
	r.Body = cb
	return cb
}
