// Package locality is the pure translation stage of the locality pipeline:
// topology.Topology + Policy → Istio DestinationRules (istio.io/api types)
// with trafficPolicy.loadBalancer.localityLbSetting (failover to the nearest
// region that has endpoints) and the outlierDetection istiod needs before it
// sends locality priorities at all. It does no I/O; pkg/locality/rulesync
// writes its output into the primary's API server, where istiod reads it.
//
// Failover order, per source region, nearest first, from in order of
// preference: an explicit order (Policy.Failover, from the Istio CR's
// spec.localityLB.failover, or a Service's annotation); measured RTT
// (Policy.Distances, see DistancesFromRTT); a stable default (longest common
// name prefix, then name: "us-east-1" is nearer "us-east-2" than "eu-west-1").
//
// Istio's failover setting can name only one target region per source
// region (istiod demotes every other region to one shared priority), so the
// generated rule names, per source region, the first region in that order
// where the service has ready endpoints. The full order is kept in the
// explanation (Explain) for the debug endpoint.
//
// Never fight user config: no rule is generated for a host that a user's
// DestinationRule covers, nor for a Service annotated
// meshfleet.io/locality: "off".
package locality
