// Package chaos is meshfleet's chaos suite (build tag chaos, `make chaos`):
// in a private network namespace it brings up the sandbox (internal/sandbox: a
// primary and two remotes, each on its own etcd, the operator, two tunnel
// servers behind a Lease with two agents per remote, the locality server,
// a real istiod and grpc-go proxyless clients calling gRPC servers in three
// zones), then kills and restarts one component at a time while the clients
// keep calling. For each fault it records RPC errors, the share of calls
// answered in the client's own zone, whether a generated DestinationRule
// disappeared from istiod (/debug/configz), the time to converge after the
// restart and the operator's conditions during the outage; it prints the
// table and asserts that no rule was lost, that traffic stayed in its zone
// and that everything converged.
package chaos
