package check

import (
	"time"

	"github.com/meshfleet/meshfleet/pkg/locality/health"
)

// Facts is everything the checks look at, read once by Gather (or built by
// a test). A field's Err says why it could not be read.
type Facts struct {
	Now       time.Time
	Namespace string
	// API is the primary's API server.
	API API
	// CRDs are the CustomResourceDefinitions found, by name.
	CRDs map[string]CRD
	// CRDsErr is why the CRDs could not be listed.
	CRDsErr string
	// Operator is the operator's Deployment (nil if there is none: it may
	// run outside the cluster).
	Operator *Workload
	// Clusters are the mesh's clusters: the Istio resources (primaries)
	// then the RemoteIstio resources.
	Clusters []Cluster
	// ClustersErr is why the Istio or RemoteIstio resources could not be
	// listed.
	ClustersErr string
	// Istiod is istiod's own view of its clusters.
	Istiod Endpoint[[]IstiodCluster]
	// Tunnel is the tunnel server's view of its agents (meaningful only
	// when a remote is tunnelled).
	Tunnel Endpoint[TunnelState]
	// Locality is the locality server's health (nil unless a primary has
	// spec.localityLB.enabled).
	Locality *Locality
}

// API is what the primary's API server said about itself.
type API struct {
	Host    string
	Version string
	Err     string
}

// CRD is one CustomResourceDefinition.
type CRD struct {
	Established bool
}

// Workload is a Deployment's rollout state.
type Workload struct {
	Namespace, Name string
	Replicas        int32
	Available       int32
	Err             string
}

// Role of a cluster in the mesh.
const (
	RolePrimary = "primary"
	RoleRemote  = "remote"
)

// Cluster is one member of the mesh as its resource reports it, with what
// could be read of it.
type Cluster struct {
	// Resource is the Istio or RemoteIstio resource's name; Name the
	// cluster ID.
	Resource, Name, Role string
	// Connection is Direct or Tunnel (remotes).
	Connection string
	Phase      string
	// Generation and ObservedGeneration of the resource: the operator has
	// seen the latest spec when every condition observed Generation.
	Generation, ObservedGeneration int64
	// Problems are the conditions that are not True, as "Type (Reason): message".
	Problems []string
	// KubernetesVersion of the cluster's API server ("" if unknown).
	KubernetesVersion string
	// CA is the cluster's cacerts (nil if meshctl cannot read the cluster).
	CA *CACerts
	// IntermediateExpiry is the expiry the resource's status reports.
	IntermediateExpiry *time.Time
	// Gateways are the gateway Deployments in the cluster (nil if it
	// cannot be read).
	Gateways []Workload
	// GatewaysErr is why they could not be read.
	GatewaysErr string
	// ReaderAccess is whether the credentials istiod holds for this remote
	// (its remote secret) are accepted by the remote; nil when meshctl
	// cannot try them (a token file of istiod's pod, through the tunnel).
	ReaderAccess *Probe
	// Readable says whether meshctl could reach the cluster's API to read
	// CA and Gateways; ReadErr is why not.
	Readable bool
	ReadErr  string
}

// CACerts is a cluster's plug-in CA Secret (cacerts).
type CACerts struct {
	// CertPEM is ca-cert.pem, RootPEM root-cert.pem, ChainPEM cert-chain.pem.
	CertPEM, RootPEM, ChainPEM []byte
	Err                        string
}

// Probe is the outcome of one request.
type Probe struct {
	// Code is the HTTP status (0 without an answer).
	Code int
	Err  string
}

// Endpoint is something read from a component's HTTP endpoint.
type Endpoint[T any] struct {
	// URL is where it was read ("" if no address is known).
	URL   string
	Value T
	Err   string
}

// IstiodCluster is one entry of istiod's /debug/clusterz.
type IstiodCluster struct {
	ID         string `json:"id"`
	SecretName string `json:"secretName"`
	SyncStatus string `json:"syncStatus"`
}

// TunnelState is the active tunnel server's view of its agents.
type TunnelState struct {
	// Active is false when the server read is the standby.
	Active bool
	// Agents is the number of connected agents per cluster.
	Agents map[string]int
	// RTT is the last measured round-trip time per cluster and agent.
	RTT map[string]map[string]time.Duration
}

// Locality is the locality server's health.
type Locality struct {
	// Verdict is health.Judge of its published summary and Lease.
	Verdict health.Verdict
	// Debug is its debug endpoint (/debug/locality): the members it reads
	// and whether each synced, and whether this replica writes.
	Debug Endpoint[LocalityDebug]
}

// LocalityDebug is what the checks use of /debug/locality.
type LocalityDebug struct {
	Leader  bool             `json:"leader"`
	Rules   int              `json:"rules"`
	Members []LocalityMember `json:"members"`
}

// LocalityMember is one member cluster of the locality server.
type LocalityMember struct {
	Name   string `json:"name"`
	Synced bool   `json:"synced"`
}
