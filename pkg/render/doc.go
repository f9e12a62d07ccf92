// Package render turns an Istio resource into the Kubernetes objects of its
// control plane, in two pure stages:
//
//	FromIstio:  Istio CR  -> ControlPlane (validated, defaulted; errors name the field and the fix)
//	Render:     ControlPlane -> Manifest (CRDs, objects, namespace labels), from the charts in manifests/
//
// Nothing here talks to a cluster; package install applies the result.
package render
