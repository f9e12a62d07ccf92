// Package topology is the first stage of the locality pipeline: it watches
// Nodes, Services, EndpointSlices, Pods (metadata only) and DestinationRules
// in every member cluster and keeps a typed model of where each service's
// endpoints run (region/zone/subzone, ready or not) and which hosts users
// already configure themselves.
//
// Snapshot is cheap after a change in one cluster: the watcher keeps each
// cluster's share of the model (buildPart, pure) and rebuilds only the
// shares of clusters whose informers saw a change before merging them.
//
// The model (Topology) is plain data: it can be copied, printed as YAML and
// validated, and is the input of pkg/locality's golden tests.
//
// Locality of an endpoint follows istiod (DESIGN.md, "Facts about Istio
// locality routing"): the Pod label topology.istio.io/locality wins
// ("region.zone.subzone"); else the Node's topology.kubernetes.io/region|zone,
// falling back to failure-domain.beta.kubernetes.io/region|zone, with the
// subzone from topology.istio.io/subzone.
package topology
