package tunnel

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

// writesConn records each Write it receives.
type writesConn struct {
	net.Conn
	writes [][]byte
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func header(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestCoalescingConnJoinsHeaderAndBody(t *testing.T) {
	big := bytes.Repeat([]byte("b"), coalesceMax+100)
	steps := [][]byte{
		header(yamuxTypeData, 5), []byte("hello"), // one write
		header(1, 4096),                              // a window update: no body, written as is
		header(yamuxTypeData, uint32(len(big))), big, // header + first part, then the rest
	}
	wc := &writesConn{}
	c := newCoalescingConn(wc)
	var want []byte
	for _, p := range steps {
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
		want = append(want, p...)
	}
	if got := bytes.Join(wc.writes, nil); !bytes.Equal(got, want) {
		t.Fatalf("the bytes written differ from the bytes given (%d vs %d)", len(got), len(want))
	}
	sizes := []int{}
	for _, w := range wc.writes {
		sizes = append(sizes, len(w))
	}
	wantSizes := []int{yamuxHeaderSize + 5, yamuxHeaderSize, coalesceMax, len(big) + yamuxHeaderSize - coalesceMax}
	if len(sizes) != len(wantSizes) {
		t.Fatalf("writes %v, want %v", sizes, wantSizes)
	}
	for i := range sizes {
		if sizes[i] != wantSizes[i] {
			t.Fatalf("writes %v, want %v", sizes, wantSizes)
		}
	}
}
