package tunnel

import "sync"

// copyBufferSize is the buffer httputil.ReverseProxy copies bodies and
// upgraded streams with, on both ends. Every open watch holds one on each
// end for as long as it lasts, so it is ReverseProxy's 32 KiB default:
// with 256 KiB, istiod watching a cluster cost the tunnel 5.2 MiB per
// agent, with 32 KiB 1.8 MiB, for about 15% less bulk throughput
// (tests/bench/fleet, tests/bench/tunnel).
const copyBufferSize = 32 << 10

// copyBuffers implements httputil.BufferPool.
type copyBuffers struct{ pool sync.Pool }

var proxyBuffers = &copyBuffers{pool: sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}}

func (p *copyBuffers) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p *copyBuffers) Put(b []byte) { p.pool.Put(&b) }
