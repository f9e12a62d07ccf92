package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeconfigSecretKey is the key of the Secret named by a RemoteIstio's
// spec.kubeconfigSecretRef that holds the remote cluster's kubeconfig.
const KubeconfigSecretKey = "kubeconfig"

// RemoteIstioSpec is the desired mesh membership of one remote cluster.
type RemoteIstioSpec struct {
	// ClusterName identifies the remote cluster in the mesh. Default: the
	// resource's name.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +optional
	ClusterName string `json:"clusterName,omitempty"`

	// Network names the network the remote cluster's pods are on. Default:
	// the primary's network in flatNetwork mode, network-<clusterName> in
	// gatewayConnected mode.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([-a-zA-Z0-9._]*[a-zA-Z0-9])?$`
	// +optional
	Network string `json:"network,omitempty"`

	// IstioRef names the Istio resource, in this namespace, whose control plane
	// the remote cluster joins. Default: the only Istio resource in the namespace.
	// +optional
	IstioRef string `json:"istioRef,omitempty"`

	// KubeconfigSecretRef names a Secret in this namespace whose "kubeconfig" key
	// reaches the remote cluster's API server. Leave it unset when the cluster
	// is reached through the meshfleet tunnel.
	// +optional
	KubeconfigSecretRef *corev1.LocalObjectReference `json:"kubeconfigSecretRef,omitempty"`

	// PilotAddress is the IP address or DNS name at which the remote
	// cluster's proxies reach the primary's istiod (ports 15012 and 15017),
	// usually the primary's east-west gateway. Default: the external address
	// of the primary's east-west gateway Service.
	// +optional
	PilotAddress string `json:"pilotAddress,omitempty"`

	// Hub is the image registry and repository. Default: the primary's hub.
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9][-a-zA-Z0-9._:/{}]*$`
	// +optional
	Hub string `json:"hub,omitempty"`

	// Version of the Istio components in the remote cluster. Default: the
	// primary's version.
	// +kubebuilder:validation:Pattern=`^[0-9]+\.[0-9]+\.[0-9]+([-+.][0-9A-Za-z.-]+)?$`
	// +optional
	Version string `json:"version,omitempty"`

	// AutoInjectionNamespaces are labelled istio-injection=enabled. Not
	// Kubernetes' own (kube-system, kube-public, kube-node-lease), nor the
	// control plane's.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(n, !(n in ['kube-system', 'kube-public', 'kube-node-lease']))",message="Kubernetes' own namespaces (kube-system, kube-public, kube-node-lease) cannot get sidecar injection; remove them from the list"
	// +optional
	AutoInjectionNamespaces []string `json:"autoInjectionNamespaces,omitempty"`

	// DockerImage selects a regional mirror of the hub.
	// +optional
	DockerImage DockerImageSpec `json:"dockerImage,omitempty"`

	// Gateways sets the gateways installed in the remote cluster.
	// +optional
	Gateways GatewaysSpec `json:"gateways,omitempty"`

	// IncludeIPRanges lists the CIDRs whose outbound traffic sidecars capture,
	// comma-separated, or "*" for all.
	// +kubebuilder:default="*"
	// +optional
	IncludeIPRanges string `json:"includeIPRanges,omitempty"`

	// ExcludeIPRanges lists CIDRs, comma-separated, that bypass the sidecar.
	// +optional
	ExcludeIPRanges string `json:"excludeIPRanges,omitempty"`

	// Proxy overrides proxy defaults for workloads of the remote cluster.
	// +optional
	Proxy ProxySpec `json:"proxy,omitempty"`

	// Security of the remote cluster. Its intermediate CA is always issued by
	// the primary's root; only lifetimes may be set here.
	// +optional
	Security SecuritySpec `json:"security,omitempty"`

	// SidecarInjector sets automatic sidecar injection in the remote cluster.
	// +optional
	SidecarInjector SidecarInjectorSpec `json:"sidecarInjector,omitempty"`
}

// RemoteIstioStatus is the observed state of a remote cluster's membership.
type RemoteIstioStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase summarises the conditions.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// ClusterName is the cluster ID in use.
	// +optional
	ClusterName string `json:"clusterName,omitempty"`

	// Connection is how the operator reaches the remote API server: Direct
	// (kubeconfig Secret) or Tunnel.
	// +optional
	Connection string `json:"connection,omitempty"`

	// ClusterUID identifies the remote cluster (the UID of its kube-system
	// namespace), recorded on first contact: a kubeconfig that later points
	// at another cluster is refused.
	// +optional
	ClusterUID string `json:"clusterUID,omitempty"`

	// KubernetesVersion of the remote API server.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// ChartVersion is the version label of the Istio chart set the remote's
	// objects were rendered from (spec.version's minor, else the primary's).
	// +optional
	ChartVersion string `json:"chartVersion,omitempty"`

	// Revisions counts the remote's pods per istiod revision (the primary's
	// RevisionBased control plane), from the injector's record on each pod;
	// the Istio resource adds them up in its status.revisions.
	// +listType=map
	// +listMapKey=name
	// +optional
	Revisions []RevisionPods `json:"revisions,omitempty"`

	// DefaultTagRevision is the revision the default tag's webhook in this
	// cluster calls, as last applied (RevisionBased): a fleet rollout's
	// gate judges a batch only once each of its clusters reports the new
	// revision here.
	// +optional
	DefaultTagRevision string `json:"defaultTagRevision,omitempty"`

	// Certificates describes the remote's intermediate CA (cacerts).
	// +optional
	Certificates *CertificatesStatus `json:"certificates,omitempty"`

	// Conditions: Connected, CertificatesIssued, Installed, Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RemoteIstio joins one remote cluster to the mesh of an Istio control plane.
// Create it next to that Istio resource in the primary cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=meshfleet
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.status.clusterName`
// +kubebuilder:printcolumn:name="Connection",type=string,JSONPath=`.status.connection`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="(has(self.spec) && has(self.spec.clusterName)) || (size(self.metadata.name) <= 63 && !self.metadata.name.contains('.'))",message="the cluster name defaults to metadata.name, which is not a valid cluster name (at most 63 characters, no dots); set spec.clusterName"
type RemoteIstio struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RemoteIstioSpec   `json:"spec,omitempty"`
	Status RemoteIstioStatus `json:"status,omitempty"`
}

// RemoteIstioList is a list of RemoteIstio resources.
//
// +kubebuilder:object:root=true
type RemoteIstioList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RemoteIstio `json:"items"`
}

// RevisionPods is the number of pods of a cluster on one istiod revision.
type RevisionPods struct {
	// Name of the revision.
	Name string `json:"name"`
	// Pods on it.
	Pods int32 `json:"pods"`
}
