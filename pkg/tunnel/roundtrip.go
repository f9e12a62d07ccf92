package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connPool sends bodyless GET and HEAD requests (nearly all of the
// Kubernetes API traffic: gets, lists, watches, logs) as HTTP/1.1 on pooled
// connections from the caller's own goroutine: it writes the request onto
// a connection, reads the response from it and pools the connection again
// once the body has been read to its end. net/http's Transport runs a read
// and a write goroutine per connection and passes every request and
// response between them and the caller; here there is no hand-off.
//
// The server uses one per agent, over yamux streams; the agent one to its
// API server, over TLS. Everything else — requests with a body (the
// Transport reads an early answer while the body is still being written),
// upgrades (SPDY, WebSocket) and other methods — keeps going through a
// Transport.
type connPool struct {
	// dial opens a connection; errors are returned as they are.
	dial func(ctx context.Context) (net.Conn, error)
	// gone, if set, reports an error when no connection can be had (the
	// agent's session closed); idle connections are then dropped.
	gone func() error
	// name is the peer in error messages.
	name string

	mu   sync.Mutex
	idle []*pooledStream
}

const (
	maxIdleStreams    = 256
	idleStreamTimeout = 90 * time.Second
	streamBufferSize  = 16 << 10
)

// pooledStream is one HTTP/1.1 keep-alive connection.
type pooledStream struct {
	conn      net.Conn
	br        *bufio.Reader
	idleSince time.Time
}

var bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// direct reports whether req may take a connPool: a GET or HEAD without a
// body that asks for no upgrade.
func direct(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		req.Header.Get("Upgrade") == "" && len(req.TransferEncoding) == 0
}

// get returns an idle stream, or opens one; reused reports which.
func (p *connPool) get(ctx context.Context) (ps *pooledStream, reused bool, err error) {
	if p.gone != nil {
		if err := p.gone(); err != nil {
			p.closeIdle()
			return nil, false, err
		}
	}
	p.mu.Lock()
	for len(p.idle) > 0 {
		ps = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(ps.idleSince) < idleStreamTimeout {
			p.mu.Unlock()
			return ps, true, nil
		}
		ps.conn.Close()
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return &pooledStream{conn: c, br: bufio.NewReaderSize(c, streamBufferSize)}, false, nil
}

// put hands ps back for another request, or closes it if the pool is full.
func (p *connPool) put(ps *pooledStream) {
	ps.idleSince = time.Now()
	p.mu.Lock()
	if len(p.idle) < maxIdleStreams && (p.gone == nil || p.gone() == nil) {
		p.idle = append(p.idle, ps)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	ps.conn.Close()
}

// dropIdle closes one idle stream, freeing its slot; it reports whether
// there was one.
func (p *connPool) dropIdle() bool {
	p.mu.Lock()
	if len(p.idle) == 0 {
		p.mu.Unlock()
		return false
	}
	ps := p.idle[0]
	p.idle = p.idle[1:]
	p.mu.Unlock()
	ps.conn.Close()
	return true
}

// closeIdle closes every idle stream.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ps := range idle {
		ps.conn.Close()
	}
}

// errStreamReused marks a failure on a stream taken from the pool before
// any byte of the answer came: the agent may have closed it while idle, so
// the request (a GET or HEAD) is sent again on a new stream, as
// net/http's Transport does.
var errStreamReused = errors.New("reused stream failed before the answer")

// roundTrip sends req, which direct accepted.
// A failure on a reused connection is retried on the next one (each idle
// connection is tried at most once, so a pool the peer closed while idle
// — an agent draining — empties), ending with a new connection, whose
// failure is final.
func (p *connPool) roundTrip(req *http.Request) (*http.Response, error) {
	for {
		ps, reused, err := p.get(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := p.exchange(ps, req, reused)
		if errors.Is(err, errStreamReused) && req.Context().Err() == nil {
			continue
		}
		return resp, err
	}
}

// exchange writes req on ps and reads the answer's headers; the body is
// read by the caller.
func (p *connPool) exchange(ps *pooledStream, req *http.Request, reused bool) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		p.put(ps)
		return nil, err
	}
	// A caller that goes away unblocks whatever is reading or writing the
	// stream, which is then closed rather than reused.
	stop := context.AfterFunc(ctx, func() { _ = ps.conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error, beforeAnswer bool) (*http.Response, error) {
		stop()
		ps.conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if reused && beforeAnswer {
			return nil, fmt.Errorf("%w: %w", errStreamReused, err)
		}
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(ps.conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	bufWriters.Put(bw)
	if err != nil {
		return fail(err, true)
	}
	var resp *http.Response
	for {
		if _, err := ps.br.Peek(1); err != nil {
			return fail(err, true)
		}
		resp, err = http.ReadResponse(ps.br, req)
		if err != nil {
			return fail(err, false)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("the agent switched protocols on a request that asked for no upgrade"), false)
		}
		if resp.StatusCode >= 200 || resp.StatusCode < 100 {
			break
		}
		// An informational answer (103 Early Hints) precedes the real
		// one; it has no body.
	}
	keep := !resp.Close && !req.Close && resp.ProtoAtLeast(1, 1)
	if resp.Body == http.NoBody {
		if stop() && keep {
			p.put(ps)
		} else {
			ps.conn.Close()
		}
		return resp, nil
	}
	resp.Body = &streamBody{body: resp.Body, pool: p, ps: ps, stop: stop, keep: keep}
	return resp, nil
}

// streamBody is a response body on a pooled stream: read to its end, the
// stream goes back to the pool; closed before, the stream is closed (the
// agent's server sees the end of the stream and stops the request).
type streamBody struct {
	body io.ReadCloser
	pool *connPool
	ps   *pooledStream
	stop func() bool
	keep bool

	mu   sync.Mutex
	done bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *streamBody) Close() error {
	b.finish(false)
	return nil
}

// finish releases the stream once: back to the pool if the body was read
// to its end and the connection may be kept, closed otherwise.
func (b *streamBody) finish(eof bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	if b.stop() && eof && b.keep {
		_ = b.body.Close()
		b.pool.put(b.ps)
		return
	}
	// Closing the body of a response drains it: make that fail at once
	// rather than wait for whatever the agent still sends.
	_ = b.ps.conn.SetReadDeadline(time.Unix(1, 0))
	b.ps.conn.Close()
	_ = b.body.Close()
}
