// Package rulesync is the last stage of the locality pipeline: it writes
// the DestinationRules that pkg/locality translates from the topology into
// the Kubernetes API of the primary cluster, where istiod reads them with
// its ordinary k8s:// config source. etcd is their durable last-good store:
// istiod starts, becomes ready and keeps serving the rules last written
// whether or not the locality server runs.
//
// Stages, each in its own file:
//
//   - plan.go (pure): the rules live in the cluster, the desired rules and
//     the sync state of every member cluster → creates, updates, deletes,
//     and the rules held back. Degrade, never withdraw: while a member has
//     not synced since start, existing rules are kept as they are (only
//     hosts without a rule yet are created), because the translation lacks
//     that member's endpoints and would drop or narrow their rules.
//   - server.go (I/O): debounces topology changes, translates, plans and
//     writes — Create for a new name (so a same-named object someone else
//     made is never touched), server-side apply with field manager
//     meshfleet-locality and a UID precondition for an update, delete with
//     a UID precondition. A content-hash annotation makes unchanged rules
//     cost no write. It watches only its own rules (label
//     app.kubernetes.io/managed-by=meshfleet-locality): in its namespace, and
//     beside users' subsets-only rules in theirs, for istiod to merge.
//   - holddown.go (pure): whether a write may wait for the hold-down
//     (Options.HoldDown, 300 ms): it changes only failover entries no
//     request uses now — targets readiness moved, for regions served
//     locally or left with one ready region to go to (Deferrable,
//     DeferrableMove) — so that istiod pushes the endpoint change behind
//     it alone instead of merging the two in one debounce window. Users'
//     changes (a Service's own settings, the policy, users' rules, the
//     nodes' regions) never wait; Sync writes everything at once.
//   - incremental.go (pure): the translation placed into the rules
//     namespace and grouped (group.go), kept per namespace, so that a change
//     of some Services (topology.Watcher.Changes → locality.TranslateDelta)
//     places, groups and plans those Services alone; a namespace is grouped
//     again from scratch only when its grouping changes. Its property test
//     checks it against Group(Place(Translate)) on random changes.
//   - leader.go: one writer at a time, by a coordination.k8s.io Lease
//     (client-go leaderelection); the other replicas translate and serve
//     their debug view but do not write.
//   - status.go: after each sync the writer publishes its health
//     (pkg/locality/health.Summary) in the ConfigMap
//     meshfleet-locality-status, only when it changed; meshctl status reads
//     it with the Lease.
//   - debug.go, metrics.go: /debug/locality and meshfleet_locality_*.
package rulesync
