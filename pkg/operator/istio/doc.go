// Package istio is the controller of Istio resources. Each reconcile walks the
// install steps, one status condition each:
//
//	PreCheckPassed             spec valid, Kubernetes version, namespace, no conflicting install
//	ResourceDefinitionsCreated Istio's CRDs established; root CA and this cluster's cacerts issued
//	ControlPlaneDeployed       every rendered object applied (server-side), leftovers pruned
//	Ready                      istiod and the gateways rolled out at the desired version
//
// Rendering is pure (package render); this package does the I/O around it.
package istio
