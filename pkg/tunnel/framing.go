package tunnel

import (
	"encoding/binary"
	"net"
	"sync"
)

// yamux frame layout (github.com/hashicorp/yamux spec.md): a 12-byte header
// (version, type, flags, stream ID, length); a data frame's body of length
// bytes follows its header.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
	// coalesceMax is the most a coalesced write holds: one TLS record.
	coalesceMax = 16 << 10
)

// coalescingConn is the connection under a yamux session. yamux's send loop
// writes each data frame as two calls, its header and then its body; over
// TLS that is two records and two syscalls. coalescingConn holds back a data
// frame's header and writes it with the start of the body that the send
// loop writes next, so a small frame is one record and one syscall.
//
// It changes no byte of the stream, only how the bytes are cut into writes:
// a held header is always written before anything written after it.
type coalescingConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  []byte
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	return &coalescingConn{Conn: c, buf: make([]byte, 0, coalesceMax)}
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
			// A data frame's header: its body comes in the next Write.
			c.buf = append(c.buf[:0], p...)
			c.held = true
			return len(p), nil
		}
		return c.Conn.Write(p)
	}
	c.held = false
	head := min(len(p), coalesceMax-len(c.buf))
	c.buf = append(c.buf, p[:head]...)
	if _, err := c.Conn.Write(c.buf); err != nil {
		return 0, err
	}
	if head == len(p) {
		return len(p), nil
	}
	n, err := c.Conn.Write(p[head:])
	return head + n, err
}
