package v1beta1

// Phase summarises a resource's conditions in one word for `kubectl get`.
// +kubebuilder:validation:Enum=Pending;Installing;Ready;Failed;Deleting;Unreachable
type Phase string

// Phases, in the order an install moves through them.
const (
	PhasePending    Phase = "Pending"
	PhaseInstalling Phase = "Installing"
	PhaseReady      Phase = "Ready"
	PhaseFailed     Phase = "Failed"
	PhaseDeleting   Phase = "Deleting"
	// PhaseUnreachable: the cluster cannot be reached (API server, its
	// storage or the tunnel down); the other conditions keep their last
	// known status.
	PhaseUnreachable Phase = "Unreachable"
)

// Condition types of an Istio resource, one per install step.
const (
	// ConditionPreCheckPassed: the spec is valid and the cluster can take the
	// install (Kubernetes version, namespace, no conflicting control plane).
	ConditionPreCheckPassed = "PreCheckPassed"
	// ConditionResourceDefinitionsCreated: Istio's CRDs are established and the
	// mesh's CA certificates are issued.
	ConditionResourceDefinitionsCreated = "ResourceDefinitionsCreated"
	// ConditionControlPlaneDeployed: every rendered object is applied.
	ConditionControlPlaneDeployed = "ControlPlaneDeployed"
	// ConditionReady: istiod and the gateways have rolled out the desired version.
	ConditionReady = "Ready"
)

// Condition types of a RemoteIstio resource.
const (
	// ConditionConnected: the operator reaches the remote API server and it
	// is the cluster first seen under this name.
	ConditionConnected = "Connected"
	// ConditionCertificatesIssued: the remote's intermediate CA (cacerts),
	// signed by the mesh's root, is in place.
	ConditionCertificatesIssued = "CertificatesIssued"
	// ConditionInstalled: the remote pieces are applied in the remote cluster
	// and the primary's istiod has the remote secret to discover it.
	ConditionInstalled = "Installed"
)

// Connection kinds of a RemoteIstio.
const (
	ConnectionDirect = "Direct"
	ConnectionTunnel = "Tunnel"
)

// Condition reasons. Each names what happened; the condition's message says
// what to do about it.
const (
	ReasonSucceeded          = "Succeeded"
	ReasonPending            = "Pending"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonUnsupportedVersion = "UnsupportedKubernetesVersion"
	// ReasonUnsupportedIstioVersion: spec.version names an Istio minor
	// meshfleet carries no charts for; the message lists the supported ones.
	ReasonUnsupportedIstioVersion = "UnsupportedIstioVersion"
	ReasonNamespaceTerminating    = "NamespaceTerminating"
	ReasonConflict                = "ConflictingInstall"
	ReasonCAError                 = "CertificateAuthorityError"
	ReasonCRDNotEstablished       = "CRDsNotEstablished"
	ReasonApplyFailed             = "ApplyFailed"
	ReasonRollingOut              = "RollingOut"
	ReasonDeploymentFailed        = "DeploymentFailed"
	ReasonDeleting                = "Deleting"
	ReasonNoControlPlane          = "NoControlPlane"
	ReasonBadKubeconfig           = "InvalidKubeconfig"
	ReasonUnreachable             = "Unreachable"
	ReasonUnauthorized            = "Unauthorized"
	ReasonWrongCluster            = "WrongCluster"
	ReasonNoPilotAddress          = "NoPilotAddress"
	// ReasonCACertsInvalid: with spec.security.externalCA, a cluster's
	// user-supplied cacerts is missing or does not pass the checks.
	ReasonCACertsInvalid = "CACertsInvalid"
	// ReasonNotOwned: objects to be written exist and meshfleet did not create them.
	ReasonNotOwned = "ObjectsNotOwned"
	// ReasonRemotesJoined: an Istio's deletion waits for its RemoteIstios to go.
	ReasonRemotesJoined = "RemotesJoined"
)
