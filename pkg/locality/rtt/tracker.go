package rtt

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// DefaultMargin is how much nearer a region must be measured before it
// overtakes one ranked ahead of it: 10% of the farther one's RTT, at least
// MinMargin.
const (
	DefaultMargin = 0.10
	MinMargin     = time.Millisecond
)

// Tracker turns the RTTs measured from the primary cluster (where the tunnel
// server runs) into region distances for the locality policy, and calls
// Notify when the failover order they imply changes.
//
// The order is sticky: a region overtakes one ranked ahead of it only when
// it is measured nearer by more than the margin, so two regions at about
// the same distance do not swap places (and make istiod push) on every
// poll. Regions appearing or disappearing change the order at once.
//
// Wire it as Options.Snapshot = t.Snapshot(watcher.Snapshot) (it learns each
// cluster's region from the topology being translated) and Options.Policy =
// t.Policy(base), and call Check after each poll (Poller.OnPoll).
type Tracker struct {
	// RTT returns the per-cluster RTTs measured from the primary
	// (Poller.RTTs); clusters without a measurement are absent.
	RTT func() map[string]time.Duration
	// Notify is called, outside the Tracker's lock, when the order changed.
	Notify func()
	// Margin is the fraction of a region's RTT by which another must be
	// nearer to overtake it (DefaultMargin if zero; at least MinMargin).
	Margin float64

	mu      sync.Mutex
	primary string
	regions map[string]string // cluster → region, from the last topology
	order   []locality.Distance
}

// SetPrimary names the primary cluster: RTTs are measured from its region.
func (t *Tracker) SetPrimary(cluster string) {
	t.mu.Lock()
	if t.primary == cluster {
		t.mu.Unlock()
		return
	}
	t.primary = cluster
	t.mu.Unlock()
	t.Check()
}

// Observe records each cluster's region from topo.
func (t *Tracker) Observe(topo *topology.Topology) {
	r := ClusterRegions(topo)
	t.mu.Lock()
	t.regions = r
	t.mu.Unlock()
}

// Snapshot wraps a topology source so that every topology translated is
// observed first (rulesync.Server reads the policy right after the snapshot).
func (t *Tracker) Snapshot(src func() *topology.Topology) func() *topology.Topology {
	return func() *topology.Topology {
		topo := src()
		t.Observe(topo)
		return topo
	}
}

// Changes wraps a source of topologies and their changes
// (topology.Watcher.Changes) as Snapshot does.
func (t *Tracker) Changes(src func() (*topology.Topology, topology.Delta)) func() (*topology.Topology, topology.Delta) {
	return func() (*topology.Topology, topology.Delta) {
		topo, d := src()
		t.Observe(topo)
		return topo, d
	}
}

// Policy wraps the base policy (Istio resource, --policy-file): its
// explicit failover order still wins (locality.ComputeOrders ranks it
// first) and distances it gives are kept; measured distances are added for
// the region pairs it does not name.
func (t *Tracker) Policy(base func() locality.Policy) func() locality.Policy {
	return func() locality.Policy {
		p := base()
		given := map[[2]string]bool{}
		for _, d := range p.Distances {
			given[[2]string{d.From, d.To}], given[[2]string{d.To, d.From}] = true, true
		}
		ds := slices.Clone(p.Distances)
		for _, d := range t.Distances() {
			if !given[[2]string{d.From, d.To}] {
				ds = append(ds, d)
			}
		}
		p.Distances = ds
		return p
	}
}

// Distances returns the measured distances from the primary's region in
// the current order. Only their order matters to the rules generated.
func (t *Tracker) Distances() []locality.Distance {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.update()
	return slices.Clone(t.order)
}

// Check re-ranks with the latest RTTs and calls Notify if the order changed.
func (t *Tracker) Check() {
	t.mu.Lock()
	changed := t.update()
	t.mu.Unlock()
	if changed && t.Notify != nil {
		t.Notify()
	}
}

// update ranks the regions again; it reports whether the order changed.
// It runs with t.mu held.
func (t *Tracker) update() bool {
	var rtt map[string]time.Duration
	if t.RTT != nil {
		rtt = t.RTT()
	}
	var fresh []locality.Distance
	if pr := t.regions[t.primary]; t.primary != "" && pr != "" {
		fresh = locality.DistancesFromRTT(pr, t.regions, func(c string) (time.Duration, bool) {
			d, ok := rtt[c]
			return d, ok
		})
	}
	fresh = ranked(fresh)
	switch {
	case sameOrder(fresh, t.order):
		t.order = fresh // new values, same order: nothing to push
		return false
	case sameRegions(fresh, t.order) && t.withinMargin(fresh):
		return false // keep the old order (and the values that gave it)
	default:
		t.order = fresh
		return true
	}
}

// withinMargin reports whether the current order still holds against the
// fresh measurements: no region is nearer than one ranked ahead of it by
// more than the margin.
func (t *Tracker) withinMargin(fresh []locality.Distance) bool {
	frac := t.Margin
	if frac <= 0 {
		frac = DefaultMargin
	}
	now := map[string]time.Duration{}
	for _, d := range fresh {
		now[d.To] = d.RTT.Duration
	}
	for i, a := range t.order {
		ahead := now[a.To]
		margin := max(time.Duration(float64(ahead)*frac), MinMargin)
		for _, b := range t.order[i+1:] {
			if now[b.To] < ahead-margin {
				return false
			}
		}
	}
	return true
}

// ranked sorts distances (all from one region) nearest first, the way
// locality.ComputeOrders ranks them.
func ranked(ds []locality.Distance) []locality.Distance {
	if len(ds) == 0 {
		return nil
	}
	from := ds[0].From
	regions := make([]string, 0, len(ds)+1)
	regions = append(regions, from)
	for _, d := range ds {
		regions = append(regions, d.To)
	}
	by := map[string]locality.Distance{}
	for _, d := range ds {
		by[d.To] = d
	}
	out := make([]locality.Distance, 0, len(ds))
	for _, r := range locality.ComputeOrders(regions, nil, ds)[from] {
		out = append(out, by[r.Region])
	}
	return out
}

func sameOrder(a, b []locality.Distance) bool {
	return slices.EqualFunc(a, b, func(x, y locality.Distance) bool { return x.From == y.From && x.To == y.To })
}

func sameRegions(a, b []locality.Distance) bool {
	key := func(ds []locality.Distance) string {
		s := make([]string, 0, len(ds))
		for _, d := range ds {
			s = append(s, d.From+">"+d.To)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	return key(a) == key(b)
}

// ClusterRegions maps each cluster to the region of most of its nodes (the
// first by name on a tie); clusters without a node region are left out.
func ClusterRegions(topo *topology.Topology) map[string]string {
	out := map[string]string{}
	if topo == nil {
		return out
	}
	for _, c := range topo.Clusters {
		count := map[string]int{}
		for _, n := range c.Nodes {
			if r := n.Locality.Region; r != "" {
				count[r]++
			}
		}
		best := ""
		for r, n := range count {
			if best == "" || n > count[best] || (n == count[best] && r < best) {
				best = r
			}
		}
		if best != "" {
			out[c.Name] = best
		}
	}
	return out
}
