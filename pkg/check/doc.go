// Package check is the logic of `meshctl check` (in the manner of `linkerd
// check`): Gather reads, once, everything the checks look at — the primary's
// API, the meshfleet resources, each cluster's cacerts and gateways, the
// credentials istiod holds for each remote, istiod's own view of its
// remotes (/debug/clusterz, what `istioctl x remote-clusters` shows), the
// tunnel server's agents and RTTs (its /metrics) and the locality server's
// health (its ConfigMap and debug endpoint) — into Facts; Run turns Facts
// into Results with the checks in Checks, which are data and pure. Every
// failing result carries a hint: what to do about it.
//
// Where meshctl reaches istiod, the tunnel server and the locality server
// is Endpoints; a kubeconfig may carry them (EndpointsExtension), which is
// how the sandbox hands its addresses to meshctl.
package check
