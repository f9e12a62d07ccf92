// Package yamux is github.com/hashicorp/yamux v0.1.2 (MPL-2.0, LICENSE;
// wire format in spec.md, unchanged) with one change to its send path,
// marked "meshfleet" in session.go: a frame written while nothing else is
// being written goes onto the connection from the writer's own goroutine,
// instead of being handed to the session's send loop and waited for (two
// goroutine switches per frame, the largest cost left on the tunnel's data
// path; see pkg/tunnel/doc.go). The send loop still writes control frames
// queued from the receive loop (which must never block on the connection)
// and frames whose writer found the connection busy; a token channel keeps
// every frame whole on the wire; it writes every frame queued by the time
// it holds the connection in one write (up to one TLS record's 16 KiB), so
// that a watch event fanned out to many streams is a few records rather
// than one per stream (send_test.go). Session.RemoteGoAway is added, so that
// streams kept idle to a peer that is going away are not reused.
//
// Anything else is upstream's: when updating, copy the new release's
// non-test files over these and re-apply the change.
package yamux
