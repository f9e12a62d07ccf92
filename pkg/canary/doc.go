// Package canary shifts traffic between two versions of a service: a stable
// subset and a canary subset of one DestinationRule, weighted by the routes
// of a VirtualService.
//
// The package is split like the rest of meshfleet: pure transformations
// (weights.go: the step plan; merge.go: what the VirtualService and
// DestinationRule become, keeping every unrelated route, subset and traffic
// policy, notably the locality policy), the analysis gate (gate.go: success
// rate and latency read from Prometheus), and the I/O edge (controller.go:
// reads and writes through istio.io/client-go, the canary's state kept in an
// annotation on the VirtualService).
package canary
