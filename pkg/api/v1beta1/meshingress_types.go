package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshIngressSpec is one mesh-wide entry point: the hosts it serves, the
// clusters whose ingress gateways (namespace istio-gateways) serve them, and
// per route how traffic divides over the member clusters.
type MeshIngressSpec struct {
	// Hosts are the external host names served, e.g. shop.example.com.
	// +kubebuilder:validation:MinItems=1
	Hosts []string `json:"hosts"`

	// GatewayClusters names the member clusters whose ingress gateway is an
	// entry point (the global load balancer points at all of them). Empty:
	// every cluster's ingress gateway.
	// +optional
	GatewayClusters []string `json:"gatewayClusters,omitempty"`

	// GatewaySelector selects the ingress gateway pods. Default:
	// {istio: ingressgateway}.
	// +optional
	GatewaySelector map[string]string `json:"gatewaySelector,omitempty"`

	// Port is the gateway port the hosts are served on (HTTP). Default: 80.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// Routes are tried in order; the first whose match fits takes the request.
	// +kubebuilder:validation:MinItems=1
	Routes []IngressRoute `json:"routes"`
}

// IngressRoute sends the requests it matches to one service, divided over
// clusters by weight, or pinned to one cluster by a request header.
type IngressRoute struct {
	// Name of the route, unique in the MeshIngress (a DNS label).
	Name string `json:"name"`

	// PathPrefix the request's path must start with. Default: "/".
	// +optional
	PathPrefix string `json:"pathPrefix,omitempty"`

	// Service is the target, a Service present in the member clusters.
	Service IngressService `json:"service"`

	// Weights divide the route's traffic over clusters (they must add up to
	// 100). Each cluster's share goes to that cluster's endpoints first and
	// falls back to the other clusters when they are not ready.
	// +kubebuilder:validation:MinItems=1
	Weights []ClusterWeight `json:"weights"`

	// HeaderRoutes pin requests with a header value to one cluster (checked
	// before the weights).
	// +optional
	HeaderRoutes []HeaderRoute `json:"headerRoutes,omitempty"`

	// Fallback orders the regions a cluster's traffic falls back to when
	// that cluster's endpoints are not ready: for traffic entering in
	// region From, the region To comes next (Istio's localityLbSetting
	// failover). Empty: the nearest healthy endpoints (same zone, same
	// region, then any), as the locality server gives sidecars.
	// +optional
	Fallback []RegionFallback `json:"fallback,omitempty"`
}

// IngressService names a Service by name, namespace and port.
type IngressService struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
}

// ClusterWeight is one cluster's share of a route, in percent.
type ClusterWeight struct {
	Cluster string `json:"cluster"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}

// HeaderRoute pins requests whose header Name equals Value to Cluster.
type HeaderRoute struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Cluster string `json:"cluster"`
}

// RegionFallback: traffic entering in region From falls back to region To.
type RegionFallback struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// MeshIngressStatus reports what the operator rendered.
type MeshIngressStatus struct {
	// ObservedGeneration is the generation last rendered.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (rendered and applied) or the error naming the field.
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// MeshIngress is a mesh-wide ingress: one entry point over the ingress
// gateways of several clusters with per-cluster weights, header pins and
// automatic fallback.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=meshfleet
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.hosts`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshIngress struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshIngressSpec   `json:"spec,omitempty"`
	Status MeshIngressStatus `json:"status,omitempty"`
}

// MeshIngressList is a list of MeshIngress.
// +kubebuilder:object:root=true
type MeshIngressList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshIngress `json:"items"`
}
