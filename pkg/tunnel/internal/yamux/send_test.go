package yamux

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/tests/testenv"
)

// gatedConn counts writes and, while closed, blocks them.
type gatedConn struct {
	net.Conn
	mu     sync.Mutex
	gate   chan struct{}
	writes atomic.Int64
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *gatedConn) close() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate = make(chan struct{})
	return c.gate
}

// TestSendLoopBatchesQueuedFrames checks the send loop's batching: frames
// queued while the connection is busy (a watch event to many watchers)
// go out in a few writes, not two per frame, and every stream still gets
// its bytes whole and in order.
func TestSendLoopBatchesQueuedFrames(t *testing.T) {
	a, b := net.Pipe()
	conn := &gatedConn{Conn: a}
	client, err := Client(conn, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := Server(b, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	const streams, messages = 40, 5
	got := make([][]byte, streams)
	var read sync.WaitGroup
	out := make([]*Stream, streams)
	for i := range streams {
		if out[i], err = client.OpenStream(); err != nil {
			t.Fatal(err)
		}
		// A stream's SYN goes with its first write; send it now.
		if _, err := out[i].Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		in, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		read.Add(1)
		go func() {
			defer read.Done()
			got[i], _ = io.ReadAll(in)
		}()
	}

	for round := range messages {
		gate := conn.close()
		before := conn.writes.Load()
		var wrote sync.WaitGroup
		for i, s := range out {
			wrote.Add(1)
			go func() {
				defer wrote.Done()
				if _, err := fmt.Fprintf(s, "stream %d message %d;", i, round); err != nil {
					t.Error(err)
				}
			}()
		}
		// One writer holds the connection, the send loop holds one frame,
		// the rest wait in the queue.
		testenv.Eventually(t, 10*time.Second, "frames queued behind a blocked write", func() error {
			if n := len(client.sendCh); n < streams-2 {
				return fmt.Errorf("%d frames queued", n)
			}
			return nil
		})
		close(gate)
		wrote.Wait()
		// The blocked frame (its header and body), then the queue in a
		// write or a few; two writes a frame without batching.
		if n := conn.writes.Load() - before; n > 6 {
			t.Errorf("round %d: %d frames written in %d writes, want at most 6", round, streams, n)
		}
	}
	for _, s := range out {
		s.Close()
	}
	read.Wait()
	for i := range streams {
		want := string([]byte{byte(i)})
		for round := range messages {
			want += fmt.Sprintf("stream %d message %d;", i, round)
		}
		if string(got[i]) != want {
			t.Errorf("stream %d got %q, want %q", i, got[i], want)
		}
	}
}
