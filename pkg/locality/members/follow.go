package members

import (
	"log/slog"
	"sync"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// Follower keeps the locality pipeline in step with the mesh: the member
// clusters of a topology.Watcher and the policy's explicit failover order.
// Pass OnChange to NewWatcher, then Attach the topology watcher once built
// (it may be built from the first Mesh).
type Follower struct {
	// Base is the policy from elsewhere (--policy-file): its distances and
	// outlier detection are kept; its failover order is used only while the
	// Istio resource sets none.
	Base   locality.Policy
	Notify func() // called after the policy changed
	Log    *slog.Logger

	mu   sync.Mutex
	topo *topology.Watcher
	mesh *Mesh
}

// OnChange takes a new Mesh.
func (f *Follower) OnChange(m *Mesh) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mesh = m
	f.apply()
}

// Attach sets the topology watcher whose clusters follow the mesh.
func (f *Follower) Attach(w *topology.Watcher) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topo = w
	f.apply()
}

// apply runs with f.mu held.
func (f *Follower) apply() {
	if f.mesh == nil {
		return
	}
	if f.topo != nil {
		if err := f.topo.SetClusters(f.mesh.Configs()); err != nil && f.Log != nil {
			f.Log.Error("some member clusters cannot be watched", "err", err)
		}
	}
	if f.Notify != nil {
		f.Notify()
	}
}

// Unreachable returns the mesh's members that cannot be reached now
// (Mesh.Unreachable).
func (f *Follower) Unreachable() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mesh == nil {
		return nil
	}
	return append([]string(nil), f.mesh.Unreachable...)
}

// Policy returns Base with the mesh's failover order, when it sets one.
func (f *Follower) Policy() locality.Policy {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.Base
	if f.mesh != nil && len(f.mesh.Failover) > 0 {
		p.Failover = append([]locality.Failover(nil), f.mesh.Failover...)
	}
	return p
}
