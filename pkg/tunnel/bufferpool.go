package tunnel

import "sync"

// copyBufferSize is the buffer httputil.ReverseProxy copies bodies and
// upgraded streams with, on both ends. Larger than its 32 KiB default, so a
// bulk transfer makes fewer, larger yamux frames and TLS records.
const copyBufferSize = 256 << 10

// copyBuffers implements httputil.BufferPool.
type copyBuffers struct{ pool sync.Pool }

var proxyBuffers = &copyBuffers{pool: sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}}

func (p *copyBuffers) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *copyBuffers) Put(b []byte) { p.pool.Put(&b) }
