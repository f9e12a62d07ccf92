package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MultiClusterMode is how the clusters of a mesh reach each other.
// +kubebuilder:validation:Enum=none;flatNetwork;gatewayConnected
type MultiClusterMode string

const (
	// MultiClusterNone runs a single-cluster mesh.
	MultiClusterNone MultiClusterMode = "none"
	// MultiClusterFlatNetwork joins clusters whose pods reach each other directly.
	MultiClusterFlatNetwork MultiClusterMode = "flatNetwork"
	// MultiClusterGatewayConnected joins clusters on separate networks through
	// east-west gateways (port 15443, AUTO_PASSTHROUGH).
	MultiClusterGatewayConnected MultiClusterMode = "gatewayConnected"
)

// IstioSpec is the desired control plane of one cluster.
type IstioSpec struct {
	// Hub is the image registry and repository, e.g. docker.io/istio.
	// +kubebuilder:default="docker.io/istio"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9][-a-zA-Z0-9._:/{}]*$`
	// +optional
	Hub string `json:"hub,omitempty"`

	// Version is the Istio release to install, e.g. 1.30.3. Changing it rolls
	// the control plane to the new release.
	// +kubebuilder:validation:Pattern=`^[0-9]+\.[0-9]+\.[0-9]+([-+.][0-9A-Za-z.-]+)?$`
	// +kubebuilder:validation:MinLength=1
	Version string `json:"version"`

	// UpdateStrategy sets how a change of version reaches the control plane:
	// InPlace (default) replaces istiod; RevisionBased installs the new
	// version as a second istiod revision beside the old one.
	// +optional
	UpdateStrategy *UpdateStrategy `json:"updateStrategy,omitempty"`

	// ClusterName identifies this cluster in the mesh (istiod's CLUSTER_ID,
	// locality and telemetry labels). Default: the resource's name.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +optional
	ClusterName string `json:"clusterName,omitempty"`

	// Network names the network this cluster's pods are on. Clusters on
	// different networks reach each other through east-west gateways.
	// Default: network-<clusterName> in gatewayConnected mode, unset otherwise.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([-a-zA-Z0-9._]*[a-zA-Z0-9])?$`
	// +optional
	Network string `json:"network,omitempty"`

	// MultiCluster sets how clusters of this mesh are connected.
	// +optional
	MultiCluster MultiClusterSpec `json:"multiCluster,omitempty"`

	// ControlPlaneSecurityEnabled closes istiod's plain-text xDS port (15010),
	// so proxies can reach the control plane only over mutual TLS on 15012.
	// +optional
	ControlPlaneSecurityEnabled bool `json:"controlPlaneSecurityEnabled,omitempty"`

	// MTLS sets mesh-wide mutual TLS between workloads.
	// +optional
	MTLS MTLSSpec `json:"mtls,omitempty"`

	// Security chooses the mesh's root of trust and certificate lifetimes.
	// +optional
	Security SecuritySpec `json:"security,omitempty"`

	// MeshExpansion exposes istiod through the east-west gateway so workloads
	// outside the cluster (VMs, remote networks) can reach it.
	// +optional
	MeshExpansion Toggle `json:"meshExpansion,omitempty"`

	// IncludeIPRanges lists the CIDRs whose outbound traffic sidecars capture,
	// comma-separated, or "*" for all. Traffic to other ranges bypasses the mesh.
	// +kubebuilder:default="*"
	// +optional
	IncludeIPRanges string `json:"includeIPRanges,omitempty"`

	// ExcludeIPRanges lists CIDRs, comma-separated, whose outbound traffic
	// bypasses the sidecar even when includeIPRanges covers them.
	// +optional
	ExcludeIPRanges string `json:"excludeIPRanges,omitempty"`

	// OutboundTrafficPolicy sets what happens to traffic for unknown hosts.
	// +optional
	OutboundTrafficPolicy OutboundTrafficPolicySpec `json:"outboundTrafficPolicy,omitempty"`

	// Logging sets istiod's log levels.
	// +optional
	Logging LoggingSpec `json:"logging,omitempty"`

	// DockerImage selects a regional mirror of the hub.
	// +optional
	DockerImage DockerImageSpec `json:"dockerImage,omitempty"`

	// Gateways sets the gateways installed in this cluster.
	// +optional
	Gateways GatewaysSpec `json:"gateways,omitempty"`

	// SidecarInjector sets automatic sidecar injection.
	// +optional
	SidecarInjector SidecarInjectorSpec `json:"sidecarInjector,omitempty"`

	// AutoInjectionNamespaces are labelled istio-injection=enabled. Not
	// Kubernetes' own (kube-system, kube-public, kube-node-lease), nor the
	// control plane's.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(n, !(n in ['kube-system', 'kube-public', 'kube-node-lease']))",message="Kubernetes' own namespaces (kube-system, kube-public, kube-node-lease) cannot get sidecar injection; remove them from the list"
	// +optional
	AutoInjectionNamespaces []string `json:"autoInjectionNamespaces,omitempty"`

	// Proxy sets defaults for all proxies of the mesh.
	// +optional
	Proxy ProxySpec `json:"proxy,omitempty"`

	// Tracing sets trace sampling.
	// +optional
	Tracing TracingSpec `json:"tracing,omitempty"`

	// LocalityLB sets locality-aware routing and failover.
	// +optional
	LocalityLB LocalityLBSpec `json:"localityLB,omitempty"`

	// Kiali, when enabled, gives a Kiali in this cluster access to every
	// remote cluster for its multi-cluster graph: a Secret labelled
	// kiali.io/multiCluster per remote (through the tunnel when the remote
	// is tunnelled) and read-only RBAC in the remote.
	// +optional
	Kiali Toggle `json:"kiali,omitempty"`
}

// MultiClusterSpec sets how the clusters of the mesh are connected.
type MultiClusterSpec struct {
	// Mode is none, flatNetwork or gatewayConnected.
	// +kubebuilder:default=none
	// +optional
	Mode MultiClusterMode `json:"mode,omitempty"`
}

// TracingSpec sets distributed tracing.
type TracingSpec struct {
	// SamplingPercent of requests traced, 0 to 100. Default 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	SamplingPercent *float64 `json:"samplingPercent,omitempty"`
}

// LocalityLBSpec sets locality-aware routing.
type LocalityLBSpec struct {
	// Enabled keeps traffic in its own zone, then region, while endpoints there
	// are healthy, and fails over to other localities when they are not.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// ServerAddress is deprecated and unused: it was the host:port of the
	// locality server's MCP-over-xDS endpoint for istiod's configSources.
	// The locality server now writes its DestinationRules into this
	// cluster's API server, where istiod reads them, so istiod never depends
	// on the server being up. Still accepted so that existing resources
	// stay valid; the Istio resource's status says it is ignored.
	// +optional
	ServerAddress string `json:"serverAddress,omitempty"`

	// Failover gives, per source region, the region to fail over to. Regions
	// not listed fail over nearest-first, as measured or by a stable default.
	// +listType=map
	// +listMapKey=from
	// +optional
	Failover []LocalityFailover `json:"failover,omitempty"`
}

// LocalityFailover sends traffic from one region to another when the first
// region has no healthy endpoints.
type LocalityFailover struct {
	// From is the region whose traffic fails over.
	// +kubebuilder:validation:MinLength=1
	From string `json:"from"`
	// To is the region that receives it.
	// +kubebuilder:validation:MinLength=1
	To string `json:"to"`
}

// IstioStatus is the observed state of a control plane.
type IstioStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase summarises the conditions: Pending, Installing, Ready, Failed or Deleting.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// Version is the Istio release the running control plane has rolled out.
	// +optional
	Version string `json:"version,omitempty"`

	// ChartVersion is the version label of the Istio chart set the control
	// plane was rendered from (the release tag of spec.version's minor).
	// +optional
	ChartVersion string `json:"chartVersion,omitempty"`

	// ClusterName is the cluster ID in use.
	// +optional
	ClusterName string `json:"clusterName,omitempty"`

	// Certificates describes the mesh's root and this cluster's intermediate CA.
	// +optional
	Certificates *CertificatesStatus `json:"certificates,omitempty"`

	// Members are the remote clusters joined to this control plane.
	// +listType=map
	// +listMapKey=name
	// +optional
	Members []MemberStatus `json:"members,omitempty"`

	// Revisions are the installed istiod revisions, with RevisionBased.
	// +listType=map
	// +listMapKey=name
	// +optional
	Revisions []RevisionStatus `json:"revisions,omitempty"`

	// Rollout is where spec.updateStrategy.rollout stands.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`

	// Conditions follow the install steps: PreCheckPassed,
	// ResourceDefinitionsCreated, ControlPlaneDeployed, Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// UpdateStrategyType names how a version change is rolled out.
// +kubebuilder:validation:Enum=InPlace;RevisionBased
type UpdateStrategyType string

const (
	// UpdateStrategyInPlace replaces the running istiod with the new version.
	UpdateStrategyInPlace UpdateStrategyType = "InPlace"
	// UpdateStrategyRevisionBased installs each version as its own istiod
	// revision (1.30.3 -> 1-30-3); the default revision tag moves to the
	// newest revision once it is ready, and an old revision is removed after
	// the grace period once no pod uses it.
	UpdateStrategyRevisionBased UpdateStrategyType = "RevisionBased"
)

// UpdateStrategy is spec.updateStrategy, named as in Sail Operator.
// +kubebuilder:validation:XValidation:rule="!has(self.inactiveRevisionDeletionGracePeriodSeconds) || (has(self.type) && self.type == 'RevisionBased')",message="inactiveRevisionDeletionGracePeriodSeconds applies only with type RevisionBased; remove it or set type: RevisionBased"
// +kubebuilder:validation:XValidation:rule="!has(self.revisionTags) || size(self.revisionTags) == 0 || (has(self.type) && self.type == 'RevisionBased')",message="revisionTags apply only with type RevisionBased; remove them or set type: RevisionBased"
// +kubebuilder:validation:XValidation:rule="!has(self.rollout) || (has(self.type) && self.type == 'RevisionBased')",message="rollout applies only with type RevisionBased; remove it or set type: RevisionBased"
type UpdateStrategy struct {
	// Type is InPlace or RevisionBased.
	// +kubebuilder:default=InPlace
	// +optional
	Type UpdateStrategyType `json:"type,omitempty"`

	// InactiveRevisionDeletionGracePeriodSeconds is how long an old revision
	// stays installed after the default tag left it and no pod uses it.
	// Only with RevisionBased. Default 30.
	// +kubebuilder:validation:Minimum=0
	// +optional
	InactiveRevisionDeletionGracePeriodSeconds *int64 `json:"inactiveRevisionDeletionGracePeriodSeconds,omitempty"`

	// RevisionTags are named revision tags (as istioctl tag set, or Sail
	// Operator's IstioRevisionTag): each points at an installed revision,
	// and namespaces labelled istio.io/rev=<tag> are injected by it, in the
	// primary and in every remote. The default tag is the operator's (it
	// follows spec.version) and cannot be named here. Only with
	// RevisionBased.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:XValidation:rule="self.all(t, t.name != 'default')",message="the default tag follows spec.version and is moved by the operator; give the tag another name"
	// +optional
	RevisionTags []RevisionTag `json:"revisionTags,omitempty"`

	// Rollout moves the default tag to a new version's revision cluster by
	// cluster, batch by batch in order, each batch gated on the new istiod
	// being ready (and, with gate.prometheus, on its success rate) for the
	// bake time; a batch whose gate fails, or does not hold by the timeout,
	// is moved back and the rollout halts. Clusters in no batch
	// (the primary included, if not listed) move once every batch passed.
	// Only with RevisionBased.
	// +optional
	Rollout *FleetRollout `json:"rollout,omitempty"`
}

// FleetRollout is spec.updateStrategy.rollout.
type FleetRollout struct {
	// Batches in the order they move. A cluster is named by its cluster ID
	// (the Istio's status.clusterName, a RemoteIstio's clusterName) or
	// chosen by labels (clusterSelector); one in two batches fails
	// PreCheckPassed.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=50
	// +listType=map
	// +listMapKey=name
	Batches []RolloutBatch `json:"batches"`
	// Gate is what each batch must meet after its tag moved.
	Gate RolloutGate `json:"gate"`
}

// RolloutBatch is a set of clusters whose default tag moves together.
// +kubebuilder:validation:XValidation:rule="(has(self.clusters) && size(self.clusters) > 0) || has(self.clusterSelector)",message="a batch needs clusters or a clusterSelector: list its cluster IDs or select RemoteIstios by label"
type RolloutBatch struct {
	// Name of the batch, shown in the rollout table.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Clusters are the cluster IDs in the batch.
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Clusters []string `json:"clusters,omitempty"`
	// ClusterSelector adds the clusters whose labels it matches: a
	// RemoteIstio's labels for a remote, the Istio resource's own labels
	// for the primary. The batch's clusters are chosen again while it is
	// pending and kept in status.rollout once its tag moved. A cluster two
	// batches choose (by list or selector) fails PreCheckPassed; a batch
	// that chooses no cluster halts the rollout when it is its turn.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
}

// RolloutGate is the health gate of a batch: istiod-<rev> ready and, with
// xds, its proxies' ACKs (no NACK), with prometheus, the batch's success
// rate at or above the minimum, for bakeSeconds within timeoutSeconds.
// +kubebuilder:validation:XValidation:rule="!has(self.bakeSeconds) || self.bakeSeconds < self.timeoutSeconds",message="bakeSeconds must be shorter than timeoutSeconds, or no batch could pass"
type RolloutGate struct {
	// Prometheus adds a success-rate check to the gate: while a batch
	// gates, the operator queries Prometheus; a rate below minSuccessRate
	// moves the batch back at once, and a query that fails or returns no
	// data keeps the batch from passing (and moves it back at the timeout).
	// +optional
	Prometheus *RolloutPrometheusGate `json:"prometheus,omitempty"`
	// XDS adds the proxies' xDS answers to the gate: while a batch gates,
	// the operator reads the new revision's istiod per-proxy sync state
	// (its /debug/syncz); a proxy of the batch's clusters whose latest
	// answer to any type is a NACK moves the batch back at once, naming the
	// proxy and its error, and the batch passes only once every proxy of
	// its clusters connected to the new revision ACKed its latest push, and
	// at least minProxies of them.
	// +optional
	XDS *RolloutXDSGate `json:"xds,omitempty"`
	// BakeSeconds is how long the new istiod must stay ready (and the
	// success rate hold) before the batch passes. Default 0.
	// +kubebuilder:validation:Minimum=0
	// +optional
	BakeSeconds int32 `json:"bakeSeconds,omitempty"`
	// TimeoutSeconds is how long the batch may take to meet the gate before
	// its tag is moved back and the rollout halts.
	// +kubebuilder:validation:Minimum=1
	TimeoutSeconds int32 `json:"timeoutSeconds"`
}

// RolloutXDSGate is the xDS ACK/NACK part of a batch's gate.
type RolloutXDSGate struct {
	// MinProxies is how many proxies of the batch's clusters must have
	// connected to the new revision and ACKed its latest push before the
	// batch can pass (workloads restarted onto the tag). Default 1.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinProxies *int32 `json:"minProxies,omitempty"`
}

// RolloutPrometheusGate is the success-rate part of a batch's gate.
// +kubebuilder:validation:XValidation:rule="!has(self.query) || !has(self.minRequests)",message="minRequests applies to the default query only (a custom query returns a rate, not a count); remove minRequests or query"
type RolloutPrometheusGate struct {
	// Address is the base URL of Prometheus's HTTP API as the operator
	// reaches it, e.g. http://prometheus.istio-system:9090.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:MaxLength=2048
	Address string `json:"address"`
	// Query is a PromQL expression whose one sample is the batch's success
	// rate (0..1). {{ clusters }} is replaced by a regular expression
	// matching the batch's cluster IDs and {{ window }} by the time since
	// the batch's tag moved (a PromQL duration, at most 5m). Default: the
	// share of istio_requests_total reported by clients in the batch's
	// clusters (reporter="source", source_cluster=~"{{ clusters }}") that
	// got no 5xx and gRPC status OK, over {{ window }}.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Query string `json:"query,omitempty"`
	// MinSuccessRate is the lowest acceptable success rate, a decimal
	// between 0 and 1 ("0.99").
	// +kubebuilder:validation:Pattern=`^(0(\.[0-9]+)?|1(\.0+)?)$`
	MinSuccessRate string `json:"minSuccessRate"`
	// MinRequests is how many requests the default query must count in the
	// window before its rate can pass or fail the batch; with fewer the
	// batch waits, and is moved back at the timeout. Default 20. Only with
	// the default query.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinRequests *int32 `json:"minRequests,omitempty"`
}

// RolloutStatus is status.rollout: where the fleet rollout from one
// revision to another stands, per batch.
type RolloutStatus struct {
	// From is the revision the default tag leaves.
	From string `json:"from"`
	// To is the revision the default tag moves to.
	To string `json:"to"`
	// Phase is Progressing, Done or Halted.
	Phase string `json:"phase"`
	// Batches in order, with what their gate decided.
	// +optional
	Batches []RolloutBatchStatus `json:"batches,omitempty"`
}

// RolloutBatchStatus is one batch's place in the rollout.
type RolloutBatchStatus struct {
	// Name of the batch.
	Name string `json:"name"`
	// Clusters of the batch.
	// +optional
	Clusters []string `json:"clusters,omitempty"`
	// Phase is Pending, Gating, Passed or RolledBack.
	Phase string `json:"phase"`
	// MovedAt is when the tag moved to the new revision in the batch.
	// +optional
	MovedAt *metav1.Time `json:"movedAt,omitempty"`
	// DecidedAt is when the gate passed or failed.
	// +optional
	DecidedAt *metav1.Time `json:"decidedAt,omitempty"`
	// Reason says why the gate passed or failed, or what it waits for.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// RevisionTag points a named tag at an installed revision.
type RevisionTag struct {
	// Name of the tag: namespaces select it with istio.io/rev=<name>.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=40
	Name string `json:"name"`
	// Revision the tag points at: an installed revision's name (e.g.
	// 1-30-3, status.revisions[].name) or the Istio version it runs
	// (1.30.3).
	Revision string `json:"revision"`
}

// RevisionStatus is one installed istiod revision (RevisionBased only).
type RevisionStatus struct {
	// Name of the revision, e.g. 1-30-3.
	Name string `json:"name"`
	// Version is the Istio release the revision runs.
	Version string `json:"version"`
	// Pods is the number of pods injected by this revision (or labelled for
	// it or one of its tags), in the primary and every remote cluster.
	Pods int32 `json:"pods"`
	// Clusters are the clusters with pods on this revision, and how many.
	// +listType=map
	// +listMapKey=cluster
	// +optional
	Clusters []ClusterPods `json:"clusters,omitempty"`
	// Tags are the named revision tags pointing at this revision.
	// +optional
	Tags []string `json:"tags,omitempty"`
	// InUse is true while pods use the revision or the default tag points at it.
	InUse bool `json:"inUse"`
	// Default is true for the revision the default tag points at.
	// +optional
	Default bool `json:"default,omitempty"`
	// InactiveSince is when the default tag left this revision.
	// +optional
	InactiveSince *metav1.Time `json:"inactiveSince,omitempty"`
	// Message says what a revision's removal waits for.
	// +optional
	Message string `json:"message,omitempty"`
}

// ClusterPods is the number of pods of one cluster on one revision.
type ClusterPods struct {
	// Cluster is the cluster ID.
	Cluster string `json:"cluster"`
	// Pods on the revision in that cluster.
	Pods int32 `json:"pods"`
}

// MemberStatus is one remote cluster of the mesh, as its RemoteIstio reports it.
type MemberStatus struct {
	// Name of the RemoteIstio resource.
	Name string `json:"name"`
	// ClusterName is the remote's cluster ID.
	ClusterName string `json:"clusterName,omitempty"`
	// Network the remote's pods are on.
	Network string `json:"network,omitempty"`
	// Phase of the RemoteIstio resource.
	Phase Phase `json:"phase,omitempty"`
	// Connection is Direct or Tunnel.
	Connection string `json:"connection,omitempty"`
}

// CertificatesStatus describes the mesh's root and a cluster's intermediate CA.
type CertificatesStatus struct {
	// Mode is where the root comes from: SelfSigned, UserSecret (caSecretRef)
	// or External (externalCA: no root key in any cluster; the user supplies
	// each cacerts).
	// +optional
	Mode string `json:"mode,omitempty"`
	// RootFingerprint is the SHA-256 fingerprint of the root certificate.
	RootFingerprint string `json:"rootFingerprint,omitempty"`
	// RootExpiry is when the root certificate expires.
	RootExpiry *metav1.Time `json:"rootExpiry,omitempty"`
	// IntermediateExpiry is when this cluster's intermediate CA expires.
	IntermediateExpiry *metav1.Time `json:"intermediateExpiry,omitempty"`
	// IntermediateRenewal is when the intermediate CA will be reissued (in
	// External mode: when the operator starts warning that the user must
	// replace it).
	IntermediateRenewal *metav1.Time `json:"intermediateRenewal,omitempty"`
	// Warnings about a user-supplied intermediate (External mode) that do
	// not stop the install: it expires soon, or it lacks the name
	// constraints the operator puts on the intermediates it issues.
	// +optional
	Warnings []string `json:"warnings,omitempty"`
}

// CA modes in CertificatesStatus.Mode.
const (
	CAModeSelfSigned = "SelfSigned"
	CAModeUserSecret = "UserSecret"
	CAModeExternal   = "External"
)

// Istio installs and runs the mesh control plane in the cluster it is created
// in. Create one per cluster that runs istiod, in the namespace the control
// plane should live in (usually istio-system).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=meshfleet
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Running",type=string,JSONPath=`.status.version`,priority=1
// +kubebuilder:printcolumn:name="Charts",type=string,JSONPath=`.status.chartVersion`,priority=1
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.status.clusterName`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="(has(self.spec) && has(self.spec.clusterName)) || (size(self.metadata.name) <= 63 && !self.metadata.name.contains('.'))",message="the cluster name defaults to metadata.name, which is not a valid cluster name (at most 63 characters, no dots); set spec.clusterName"
type Istio struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IstioSpec   `json:"spec,omitempty"`
	Status IstioStatus `json:"status,omitempty"`
}

// IstioList is a list of Istio resources.
//
// +kubebuilder:object:root=true
type IstioList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Istio `json:"items"`
}
