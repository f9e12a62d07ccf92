package tunnel

import (
	"slices"
	"sync"
)

// registry holds the connected agents of every cluster.
type registry struct {
	mu       sync.Mutex
	clusters map[string][]*agentSession
	next     map[string]int
}

func newRegistry() *registry {
	return &registry{clusters: map[string][]*agentSession{}, next: map[string]int{}}
}

// add registers s, returning the session it replaces: an older session of
// an agent with the same cluster and ID, which has evidently reconnected.
// It returns false, registering nothing, when the cluster already has max
// other agents.
func (r *registry) add(s *agentSession, max int) (replaced *agentSession, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.clusters[s.cluster]
	for i, old := range list {
		if old.id == s.id {
			list[i] = s
			return old, true
		}
	}
	if len(list) >= max {
		return nil, false
	}
	r.clusters[s.cluster] = append(list, s)
	return nil, true
}

// hasRoom reports whether an agent with id may join cluster: it replaces
// its own older session, or the cluster has fewer than max agents.
func (r *registry) hasRoom(cluster, id string, max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.clusters[cluster]
	return len(list) < max || slices.ContainsFunc(list, func(s *agentSession) bool { return s.id == id })
}

// remove unregisters s; it reports whether s was registered.
func (r *registry) remove(s *agentSession) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.clusters[s.cluster]
	i := slices.Index(list, s)
	if i < 0 {
		return false
	}
	list = slices.Delete(list, i, i+1)
	if len(list) == 0 {
		delete(r.clusters, s.cluster)
		delete(r.next, s.cluster)
	} else {
		r.clusters[s.cluster] = list
	}
	return true
}

// pick returns the agent of cluster with the fewest requests in flight,
// skipping those in tried and, while another is left, those stopping
// (GoAway). Ties go round-robin, or, for a request that stays open (a
// watch; newest set), to the agent connected last: in a rolling update the
// old agents go first, and a watch moved onto one of them would be cut
// again. It returns nil if no agent is left.
func (r *registry) pick(cluster string, tried []*agentSession, newest bool) *agentSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.clusters[cluster]
	n := len(list)
	if n == 0 {
		return nil
	}
	start := r.next[cluster] % n
	r.next[cluster] = start + 1
	var best *agentSession
	better := func(s *agentSession) bool {
		if best == nil {
			return true
		}
		if sg, bg := s.mux.RemoteGoAway(), best.mux.RemoteGoAway(); sg != bg {
			return bg
		}
		si, bi := s.inflight.Load(), best.inflight.Load()
		if si != bi {
			return si < bi
		}
		return newest && s.connected.After(best.connected)
	}
	for i := range n {
		s := list[(start+i)%n]
		if slices.Contains(tried, s) {
			continue
		}
		if better(s) {
			best = s
		}
	}
	return best
}

// sessions returns a copy of cluster's agents.
func (r *registry) sessions(cluster string) []*agentSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.clusters[cluster])
}

// drain returns every session and forgets them all.
func (r *registry) drain() []*agentSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*agentSession
	for _, list := range r.clusters {
		out = append(out, list...)
	}
	r.clusters = map[string][]*agentSession{}
	r.next = map[string]int{}
	return out
}

// count returns the number of agents of cluster.
func (r *registry) count(cluster string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clusters[cluster])
}
