// Package netns runs a program (typically a test binary) inside a network
// namespace of its own, so that workloads can listen on addresses from the
// benchmarking range 198.18.0.0/15 (which the Kubernetes API server accepts
// in EndpointSlices, unlike loopback addresses) without touching the host's
// network.
//
// The approach is a re-exec: the process starts in the host namespace,
// re-executes its own binary (same arguments, same environment plus
// MESHFLEET_NETNS=1) in a fresh network namespace created with
// CLONE_NEWNET (and CLONE_NEWUSER when not running as root), waits for it and
// exits with its status. Inside, Setup brings the namespace's lo up and adds
// each workload address to it as a /32. Everything the program then starts
// (etcd, kube-apiserver, istiod, gRPC servers and clients) inherits the
// namespace and talks over 127.0.0.1 and the added addresses. The namespace
// has no other interface and no route, so nothing can leave it; it vanishes
// when its last process exits.
//
// In a TestMain:
//
//	func TestMain(m *testing.M) {
//		os.Exit(netns.Main(m.Run, netip.MustParseAddr("198.18.1.1")))
//	}
//
// Setup needs the ip command (iproute2).
//
// The package is shared by tests and by the CLI, so it must not import
// "testing".
package netns
