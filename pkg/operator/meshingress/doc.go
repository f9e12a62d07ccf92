// Package meshingress is the operator's MeshIngress controller: it renders
// each MeshIngress with pkg/ingress and applies the Gateways,
// VirtualService and DestinationRules into the gateways' namespace of the
// config cluster with pkg/apply (owned by the MeshIngress's UID, pruned
// when a route or cluster goes, deleted with the MeshIngress), and reports
// the outcome in its Ready condition.
package meshingress
