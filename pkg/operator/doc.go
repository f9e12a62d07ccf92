// Package operator wires the meshfleet controllers into one
// controller-runtime manager: the cache (only objects labelled
// managed-by=meshfleet, plus meshfleet's own resources), the write-counting
// client, metrics, health probes and leader election.
package operator
