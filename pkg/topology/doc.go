// Package topology is the first stage of the locality pipeline: it watches
// Nodes, Services, EndpointSlices, Pods (metadata only) and DestinationRules
// in every member cluster and keeps a typed model of where each service's
// endpoints run (region/zone/subzone, ready or not) and which hosts users
// already configure themselves.
//
// A change costs what it changes: the watcher keeps each cluster's share
// of the model (buildPart, pure) and the informers' handlers record what
// changed (a Service, an EndpointSlice's Service, a Pod, a namespace; a
// Node rebuilds the cluster's share), so Watcher.Changes rebuilds only the
// Services changed (updatePart), merges only those (mergeKeys) and says
// which they were (Delta) for the translation to follow. The informers
// keep only what the model reads (cache.go): small records of Services and
// EndpointSlices, the locality labels of Nodes and Pods.
//
// The model (Topology) is plain data: it can be copied, printed as YAML and
// validated, and is the input of pkg/locality's golden tests.
//
// Every signal istiod reads is read as istiod reads it (locality.go cites
// the istiod functions): an endpoint's locality is its Pod's label
// topology.istio.io/locality, else the legacy istio-locality, else its
// Node's topology.kubernetes.io/region|zone (falling back to
// failure-domain.beta.kubernetes.io/*) and topology.istio.io/subzone,
// parsed as istiod parses them, and the exact locality string istiod keeps
// is recorded (two strings for one locality make istiod send it twice:
// Service.DuplicateLocalities). A Service's traffic distribution
// (spec.trafficDistribution, else the annotation
// networking.istio.io/traffic-distribution on the Service, else on its
// namespace) comes from the copy istiod uses: the config cluster's
// (Topology.ConfigCluster).
package topology
