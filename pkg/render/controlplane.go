package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// ControlPlane is the resolved, validated description of one cluster's
// control plane: every default applied, every field checked. It is the only
// input of Render, and it prints as YAML for golden tests and debugging.
type ControlPlane struct {
	// Owner is the Istio resource this control plane belongs to.
	Owner Owner `json:"owner"`
	// Namespace the control plane is installed in (the owner's namespace).
	Namespace string `json:"namespace"`
	// ClusterName is istiod's cluster ID.
	ClusterName string `json:"clusterName"`
	// Network the cluster's pods are on ("" when the mesh has one network).
	Network string `json:"network,omitempty"`
	// Mode is how clusters of the mesh are connected.
	Mode v1beta1.MultiClusterMode `json:"mode"`
	// MeshID names the mesh; every cluster of one mesh shares it.
	MeshID string `json:"meshID"`
	// Remote is set when this is a remote cluster, whose proxies are served
	// by the primary's istiod; nil for the primary itself.
	Remote *Remote `json:"remote,omitempty"`

	// Hub is the image registry and repository, regional mirror applied.
	Hub string `json:"hub"`
	// Version is the Istio release (image tag).
	Version string `json:"version"`
	// Revision is the istiod revision (Istio's istio.io/rev), e.g. 1-30-3
	// from RevisionName; empty for the unrevisioned install.
	Revision string `json:"revision,omitempty"`
	// RevisionTags are the revision tags (e.g. default) that point at this
	// revision: each gets a webhook and an istiod Service of its own, so that
	// moving a tag moves the workloads that select it at their next restart.
	RevisionTags []string `json:"revisionTags,omitempty"`
	// InstalledRevisions are all revisions installed beside this one
	// (RenderRevisions sets them): the primary's east-west gateway routes
	// each revision's istiod by SNI, and the rest to the default tag.
	InstalledRevisions []string `json:"installedRevisions,omitempty"`
	// ChartVersion is the version label of the chart set Version's minor
	// installs with (manifests/charts/istio/<minor>).
	ChartVersion string `json:"chartVersion"`
	// LogLevel is istiod's --log_output_level.
	LogLevel string `json:"logLevel,omitempty"`
	// IstiodReplicas is istiod's replica count.
	IstiodReplicas int32 `json:"istiodReplicas"`
	// ClosePlaintextXDS removes istiod's plain-text xDS port 15010.
	ClosePlaintextXDS bool `json:"closePlaintextXDS,omitempty"`
	// SidecarInjection installs the injection webhook.
	SidecarInjection bool `json:"sidecarInjection"`
	// InjectionNamespaces are labelled istio-injection=enabled.
	InjectionNamespaces []string `json:"injectionNamespaces,omitempty"`
	// MTLSMode of the mesh-wide PeerAuthentication: STRICT or PERMISSIVE.
	MTLSMode string `json:"mtlsMode"`
	// ExposeIstiod routes istiod's ports through the east-west gateway.
	ExposeIstiod bool `json:"exposeIstiod,omitempty"`

	// Proxy holds defaults for every proxy.
	Proxy Proxy `json:"proxy"`
	// OutboundTrafficPolicy is REGISTRY_ONLY or ALLOW_ANY.
	OutboundTrafficPolicy string `json:"outboundTrafficPolicy"`
	// TraceSamplingPercent of requests traced.
	TraceSamplingPercent float64 `json:"traceSamplingPercent"`
	// LocalityLB sets locality-aware routing.
	LocalityLB LocalityLB `json:"localityLB"`
	// LocalityServer runs the locality server (with LocalityLB.Enabled);
	// the operator fills it from its own settings.
	LocalityServer *LocalityServer `json:"localityServer,omitempty"`
	// TunnelServer runs the tunnel server in the primary when the mesh uses
	// the tunnel; the operator fills it from its own settings.
	TunnelServer *TunnelServer `json:"tunnelServer,omitempty"`
	// Kiali gives Kiali in the primary access to the remote clusters.
	Kiali bool `json:"kiali,omitempty"`
	// Members are the other clusters of the mesh, for meshNetworks.
	Members []Member `json:"members,omitempty"`

	// Gateways to install.
	Gateways []Gateway `json:"gateways,omitempty"`
	// GatewayNamespace is the namespace the gateways are installed in: one
	// of their own, apart from the control plane's Secrets (cacerts), because
	// Istio's gateway chart lets a gateway read every Secret of its namespace.
	GatewayNamespace string `json:"gatewayNamespace"`

	// CA is where the root of trust comes from and how long certificates live.
	CA CA `json:"ca"`
}

// Remote holds what only a remote cluster has.
type Remote struct {
	// Primary is the Istio resource whose istiod serves this cluster.
	Primary Owner `json:"primary"`
	// PilotAddress is where the remote's proxies reach that istiod.
	PilotAddress string `json:"pilotAddress,omitempty"`
	// Revisions are the primary's installed istiod revisions when it
	// upgrades by revision (RevisionsOf): the remote gets a webhook and an
	// istiod Service per revision and per tag (RenderRevisions).
	Revisions []InstalledRevision `json:"revisions,omitempty"`
}

// Owner identifies the resource that owns a rendered object.
type Owner struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// UID of the resource: only objects recorded with it belong to it.
	UID types.UID `json:"uid,omitempty"`
}

// Proxy holds proxy defaults.
type Proxy struct {
	IncludeIPRanges                 string                       `json:"includeIPRanges"`
	ExcludeIPRanges                 string                       `json:"excludeIPRanges,omitempty"`
	Concurrency                     *int32                       `json:"concurrency,omitempty"`
	LogLevel                        string                       `json:"logLevel,omitempty"`
	HoldApplicationUntilProxyStarts bool                         `json:"holdApplicationUntilProxyStarts,omitempty"`
	Resources                       *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// LocalityLB sets locality-aware routing.
type LocalityLB struct {
	Enabled bool `json:"enabled"`
	// ServerAddress is deprecated and unused (spec.localityLB.serverAddress).
	ServerAddress string                     `json:"serverAddress,omitempty"`
	Failover      []v1beta1.LocalityFailover `json:"failover,omitempty"`
}

// Member is another cluster of the mesh.
type Member struct {
	ClusterName string `json:"clusterName"`
	Network     string `json:"network,omitempty"`
	// KubeconfigSecret is the RemoteIstio's kubeconfig Secret in the
	// control plane's namespace ("" through the tunnel): the locality
	// server may read it, by name.
	KubeconfigSecret string `json:"kubeconfigSecret,omitempty"`
}

// Tunnelled reports whether istiod reaches the member through the tunnel
// (it has no kubeconfig Secret).
func (m Member) Tunnelled() bool { return m.KubeconfigSecret == "" }

// UsesTunnel reports whether istiod reaches any member through the tunnel,
// which is when its remote secrets name its own token file.
func (cp *ControlPlane) UsesTunnel() bool {
	for _, m := range cp.Members {
		if m.Tunnelled() {
			return true
		}
	}
	return false
}

// GatewayKind says what a gateway is for.
type GatewayKind string

// Gateway kinds.
const (
	IngressGateway  GatewayKind = "ingress"
	EastWestGateway GatewayKind = "eastWest"
)

// GatewayNamespace is the namespace meshfleet installs the gateways in, in
// the primary and in every remote. The operator creates it, owns it and
// deletes it on uninstall.
const GatewayNamespace = "istio-gateways"

// EastWestGatewayName is the name of the east-west gateway's Deployment and Service.
const EastWestGatewayName = "istio-eastwestgateway"

// CrossNetworkPort is the east-west gateway's AUTO_PASSTHROUGH port.
const CrossNetworkPort = 15443

// Gateway is one gateway Deployment and Service.
type Gateway struct {
	Name        string             `json:"name"`
	Kind        GatewayKind        `json:"kind"`
	ServiceType corev1.ServiceType `json:"serviceType"`
	Replicas    int32              `json:"replicas"`
	// IngressClass is set when the gateway serves Kubernetes Ingress.
	IngressClass string `json:"ingressClass,omitempty"`
}

// CA says where the mesh's root comes from and how long certificates live.
type CA struct {
	// SelfSigned makes the operator generate the root.
	SelfSigned bool `json:"selfSigned"`
	// SecretName names the Secret holding the user's root (when not self-signed).
	SecretName string `json:"secretName,omitempty"`
	// RootTTL is the lifetime of a self-signed root.
	RootTTL metav1.Duration `json:"rootTTL"`
	// IntermediateTTL is the lifetime of each cluster's intermediate.
	IntermediateTTL metav1.Duration `json:"intermediateTTL"`
	// RenewBefore is how long before expiry an intermediate is reissued.
	RenewBefore metav1.Duration `json:"renewBefore"`
	// External is set when the root stays outside the clusters
	// (spec.security.externalCA): the operator issues no intermediate and
	// only checks the users' cacerts.
	External *ExternalCA `json:"external,omitempty"`
}

// ExternalCA is a root kept outside the clusters.
type ExternalCA struct {
	// RootPEM holds the root certificate(s), PEM, as given.
	RootPEM string `json:"rootPEM"`
	// WarnBefore is how long before an intermediate expires a warning is
	// raised; zero means a third of its lifetime.
	WarnBefore metav1.Duration `json:"warnBefore,omitempty"`
}
