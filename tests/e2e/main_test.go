//go:build e2e

package e2e

import (
	"net/netip"
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/internal/sandbox"
)

// Workload addresses on the namespace's lo: one echo server per zone, and
// the client's (only used as its identity in the xDS node id).
var (
	echoAddrs = []netip.Addr{
		netip.MustParseAddr("198.18.1.1"), // r1/z1
		netip.MustParseAddr("198.18.1.2"), // r1/z2
		netip.MustParseAddr("198.18.1.3"), // r2/z3
	}
	clientAddr = netip.MustParseAddr("198.18.0.10")
)

// TestMain re-executes the test binary in a private network namespace and
// runs the tests there.
func TestMain(m *testing.M) {
	// The sandbox's demo servers (TestMeshctlCheck) listen on addresses of
	// their own.
	addrs := append(append(echoAddrs, clientAddr), sandbox.Addrs()...)
	// As meshctl does: what logs outside the sandbox's managers (a client
	// the operator creates for a remote) has nowhere to go; unset, the
	// global logger prints a stack trace after 30 s.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(netns.Main(m.Run, addrs...))
}
