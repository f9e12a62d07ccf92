// Package ingress turns a MeshIngress (one mesh-wide entry point) into the
// Istio config istiod serves the ingress gateways: one Gateway per entry
// cluster (selected by the proxy's topology.istio.io/cluster label), one
// VirtualService with the header pins and per-cluster weights, and per
// target service one DestinationRule, visible only in the gateways'
// namespace, whose subsets each put one cluster's endpoints first
// (failoverPriority topology.istio.io/cluster=<name>) and the others after
// it by locality, with the outlier detection Istio needs to fail over.
// Validate and Render are pure; the operator applies the result.
package ingress
