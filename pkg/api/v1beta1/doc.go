// Package v1beta1 holds the meshfleet.io/v1beta1 API: the Istio resource, one
// per cluster that runs the mesh control plane, and the RemoteIstio resource,
// one per remote cluster joined to that mesh.
//
// +kubebuilder:object:generate=true
// +groupName=meshfleet.io
package v1beta1
