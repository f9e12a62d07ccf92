package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
)

// Toggle switches one feature on or off.
type Toggle struct {
	// Enabled turns the feature on.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
}

// MTLSSpec sets mutual TLS between workloads of the mesh.
type MTLSSpec struct {
	// Enabled makes mutual TLS mandatory mesh-wide (a STRICT PeerAuthentication in
	// the control-plane namespace). When false, workloads accept both mTLS and
	// plain text (PERMISSIVE), which is Istio's default.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
}

// SecuritySpec chooses where the mesh's root of trust comes from.
// +kubebuilder:validation:XValidation:rule="!has(self.externalCA) || (!has(self.caSecretRef) && !(has(self.selfSigned) && self.selfSigned))",message="externalCA excludes caSecretRef and selfSigned: true; keep one way of bringing the root"
type SecuritySpec struct {
	// SelfSigned makes the operator generate the mesh's root CA and keep its key
	// in the primary cluster only. Set it to false and name caSecretRef to bring
	// your own root instead, or set externalCA to keep the root out of every
	// cluster. When none is set, selfSigned is assumed.
	// +optional
	SelfSigned *bool `json:"selfSigned,omitempty"`

	// CASecretRef names a Secret in the Istio resource's namespace that holds
	// the user's root CA as tls.crt and tls.key (or root-cert.pem and
	// root-key.pem). Requires selfSigned to be false or unset.
	// +optional
	CASecretRef *corev1.LocalObjectReference `json:"caSecretRef,omitempty"`

	// ExternalCA keeps the mesh's root key out of every cluster: the operator
	// holds and generates no root, and each cluster's istio-system/cacerts
	// (Istio's plug-in CA: ca-cert.pem, ca-key.pem, root-cert.pem,
	// cert-chain.pem) is the user's, signed offline (meshctl ca
	// sign-intermediate), by Vault or by cert-manager. The operator checks
	// every cluster's cacerts against this root and never writes it.
	// Excludes selfSigned and caSecretRef.
	// +optional
	ExternalCA *ExternalCASpec `json:"externalCA,omitempty"`

	// RootCertTTL is the lifetime of a self-signed root. Default 87600h (10 years).
	// +optional
	RootCertTTL *Duration `json:"rootCertTTL,omitempty"`

	// IntermediateCertTTL is the lifetime of each cluster's intermediate CA
	// (the cacerts Secret istiod signs workload certificates with).
	// Default 8760h (1 year).
	// +optional
	IntermediateCertTTL *Duration `json:"intermediateCertTTL,omitempty"`

	// RenewBefore is how long before expiry an intermediate CA is reissued.
	// Default: one third of intermediateCertTTL.
	// +optional
	RenewBefore *Duration `json:"renewBefore,omitempty"`
}

// ExternalCASpec is a root of trust kept outside the clusters.
type ExternalCASpec struct {
	// RootCertificate is the mesh's root CA certificate, PEM (public data:
	// no key). Several CERTIFICATE blocks are accepted while a root is
	// rotated; each cluster's intermediate must chain to one of them, and
	// its root-cert.pem must hold that root.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	RootCertificate string `json:"rootCertificate"`

	// WarnBefore is how long before a cluster's intermediate expires the
	// operator starts warning (an event and status.certificates.warnings).
	// Default: one third of the intermediate's lifetime.
	// +optional
	WarnBefore *Duration `json:"warnBefore,omitempty"`
}

// Duration is a length of time written as Go parses it: "8760h", "90m".
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
type Duration string

// OutboundTrafficPolicySpec sets what sidecars do with traffic to hosts the
// mesh does not know.
type OutboundTrafficPolicySpec struct {
	// Mode is REGISTRY_ONLY (block unknown hosts) or ALLOW_ANY (pass them through).
	// +kubebuilder:validation:Enum=REGISTRY_ONLY;ALLOW_ANY
	// +kubebuilder:default=ALLOW_ANY
	// +optional
	Mode string `json:"mode,omitempty"`
}

// LoggingSpec sets the control plane's log output.
type LoggingSpec struct {
	// Level is a comma-separated list of scope:level pairs, for example
	// "default:info,ads:debug". Levels: none, error, warn, info, debug.
	// +kubebuilder:validation:Pattern=`^([a-zA-Z0-9_-]+:(none|error|warn|info|debug))(,[a-zA-Z0-9_-]+:(none|error|warn|info|debug))*$`
	// +optional
	Level string `json:"level,omitempty"`
}

// DockerImageSpec selects a regional mirror of the image registry.
type DockerImageSpec struct {
	// Region pulls images from the registry's mirror in this region. When the
	// hub contains "{region}", the region replaces it; otherwise the region is
	// inserted after the first label of the hub's host, so
	// registry.example.com/istio becomes registry.cn-beijing.example.com/istio.
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Region string `json:"region,omitempty"`
}

// GatewaysSpec sets which gateways the mesh installs in a cluster.
type GatewaysSpec struct {
	// Enabled installs the gateways listed below; when ingress is empty, a
	// default ingress gateway named istio-ingressgateway is installed.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// Ingress lists ingress gateways.
	// +listType=atomic
	// +optional
	Ingress []IngressGatewaySpec `json:"ingress,omitempty"`

	// EastWest sets the east-west gateway that carries cross-network traffic in
	// gatewayConnected mode (installed whenever that mode or mesh expansion is on).
	// +optional
	EastWest *EastWestGatewaySpec `json:"eastWest,omitempty"`
}

// IngressGatewaySpec is one ingress gateway.
type IngressGatewaySpec struct {
	// Name of the gateway Deployment and Service. Default istio-ingressgateway.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Name string `json:"name,omitempty"`

	// Enabled installs this gateway.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// K8sIngress, when present, makes this gateway serve Kubernetes Ingress
	// resources of class istio.
	// +optional
	K8sIngress *K8sIngressSpec `json:"k8sIngress,omitempty"`

	// ServiceType of the gateway Service. Default LoadBalancer.
	// +kubebuilder:validation:Enum=LoadBalancer;NodePort;ClusterIP
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// ReplicaCount of the gateway Deployment, 0 to 100. Default 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	ReplicaCount *int32 `json:"replicaCount,omitempty"`
}

// K8sIngressSpec turns on Kubernetes Ingress support on an ingress gateway.
type K8sIngressSpec struct {
	// IngressClass is the Ingress class this gateway serves. Default istio.
	// +optional
	IngressClass string `json:"ingressClass,omitempty"`
}

// EastWestGatewaySpec is the gateway that other networks reach this cluster through.
type EastWestGatewaySpec struct {
	// ServiceType of the gateway Service. Default LoadBalancer.
	// +kubebuilder:validation:Enum=LoadBalancer;NodePort;ClusterIP
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// ReplicaCount of the gateway Deployment, 0 to 100. Default 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	ReplicaCount *int32 `json:"replicaCount,omitempty"`
}

// SidecarInjectorSpec sets automatic sidecar injection.
type SidecarInjectorSpec struct {
	// Enabled installs the sidecar injection webhook. Default true.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// ReplicaCount of the injector. On a primary cluster istiod itself serves
	// injection, so this sets istiod's replica count. 1 to 100, default 1.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	ReplicaCount *int32 `json:"replicaCount,omitempty"`
}

// ProxySpec sets defaults for every sidecar and gateway proxy.
type ProxySpec struct {
	// Concurrency is the number of proxy worker threads; 0 uses one per core.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Concurrency *int32 `json:"concurrency,omitempty"`

	// LogLevel of the proxies.
	// +kubebuilder:validation:Enum=trace;debug;info;warning;error;critical;off
	// +optional
	LogLevel string `json:"logLevel,omitempty"`

	// HoldApplicationUntilProxyStarts delays application containers until the
	// sidecar is ready.
	// +optional
	HoldApplicationUntilProxyStarts *bool `json:"holdApplicationUntilProxyStarts,omitempty"`

	// Resources of the sidecar container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}
