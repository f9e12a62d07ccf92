package render

import "k8s.io/apimachinery/pkg/runtime/schema"

// WatchedKinds are the kinds the charts render whose changes the operator
// watches, to repair drift at once. Istio's own config kinds (Gateway,
// PeerAuthentication) are not watched, because they only exist once the CRDs
// do; the periodic resync repairs them.
var WatchedKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "ServiceAccount"},
	{Version: "v1", Kind: "ConfigMap"},
	{Version: "v1", Kind: "Secret"},
	{Version: "v1", Kind: "Service"},
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfiguration"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfiguration"},
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"},
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"},
	{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"},
}

// PrunedKinds are the kinds whose leftovers (objects of ours no longer
// rendered) are deleted, the gateways' own namespace among them. CRDs are never deleted: that would delete every
// user's Istio config with them.
var PrunedKinds = append(append([]schema.GroupVersionKind{}, WatchedKinds[:len(WatchedKinds)-1]...),
	schema.GroupVersionKind{Group: "discovery.k8s.io", Version: "v1", Kind: "EndpointSlice"},
	schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "Gateway"},
	schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
	schema.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"},
	// Last: the gateways' namespace, once what is in it is gone.
	schema.GroupVersionKind{Version: "v1", Kind: "Namespace"},
)
