package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// ClusterSet is the set of clusters whose agents the server accepts: the
// clusters joined by a RemoteIstio (WatchRemoteIstios), or a fixed list.
// Removing a cluster closes its agents' sessions.
type ClusterSet struct {
	mu       sync.Mutex
	names    map[string]bool
	synced   bool
	onChange []func(removed []string)
}

// NewClusterSet returns a set of the given clusters, ready for use.
func NewClusterSet(names ...string) *ClusterSet {
	s := &ClusterSet{names: map[string]bool{}, synced: true}
	for _, n := range names {
		s.names[n] = true
	}
	return s
}

// newPendingClusterSet returns an empty set that reports itself not synced
// until its first Set.
func newPendingClusterSet() *ClusterSet {
	return &ClusterSet{names: map[string]bool{}}
}

// Has reports whether cluster is in the set.
func (s *ClusterSet) Has(cluster string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[cluster]
}

// Synced reports whether the set has been filled once.
func (s *ClusterSet) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// Names returns the clusters, sorted.
func (s *ClusterSet) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Set replaces the set's clusters and tells the listeners which were
// removed.
func (s *ClusterSet) Set(names []string) {
	next := map[string]bool{}
	for _, n := range names {
		next[n] = true
	}
	s.mu.Lock()
	var removed []string
	for n := range s.names {
		if !next[n] {
			removed = append(removed, n)
		}
	}
	s.names, s.synced = next, true
	listeners := slices.Clone(s.onChange)
	s.mu.Unlock()
	if len(removed) > 0 {
		slices.Sort(removed)
		for _, f := range listeners {
			f(removed)
		}
	}
}

// notify registers f to be called with the clusters each Set removes.
func (s *ClusterSet) notify(f func(removed []string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = append(s.onChange, f)
}

// RemoteIstioResource is the RemoteIstio resource of the primary.
var RemoteIstioResource = schema.GroupVersionResource{Group: "meshfleet.io", Version: "v1beta1", Resource: "remoteistios"}

// RemoteIstioClusters returns a ClusterSet kept equal to the clusters of the
// RemoteIstios in namespace of the primary (spec.clusterName, else the
// name) until ctx is done; every namespace if namespace is empty. A
// RemoteIstio being deleted still counts, so that the operator can clean up
// its cluster through the tunnel; once it is gone, its agents are
// disconnected.
func RemoteIstioClusters(ctx context.Context, client dynamic.Interface, namespace string, log *slog.Logger) *ClusterSet {
	set := newPendingClusterSet()
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(client, 10*time.Minute, namespace, nil)
	inf := f.ForResource(RemoteIstioResource).Informer()
	update := func() {
		var names []string
		for _, o := range inf.GetStore().List() {
			if u, ok := o.(*unstructured.Unstructured); ok {
				names = append(names, remoteIstioCluster(u))
			}
		}
		before := set.Names()
		set.Set(names)
		if after := set.Names(); !slices.Equal(before, after) {
			log.Info("clusters with a RemoteIstio changed", "clusters", after)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { update() },
		UpdateFunc: func(any, any) { update() },
		DeleteFunc: func(any) { update() },
	})
	f.Start(ctx.Done())
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			update()
		}
	}()
	return set
}

func remoteIstioCluster(u *unstructured.Unstructured) string {
	if n, _, _ := unstructured.NestedString(u.Object, "spec", "clusterName"); n != "" {
		return n
	}
	return u.GetName()
}

// unknownClusterMessage tells an agent, or a caller, how to make a cluster
// known.
func unknownClusterMessage(cluster string) string {
	return fmt.Sprintf("cluster %q has no RemoteIstio in the primary cluster, so its agents are not accepted; join the cluster with a RemoteIstio in the primary, or fix the agent's cluster name", cluster)
}
