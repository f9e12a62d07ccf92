package topology

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// destinationRules is the resource users' DestinationRules are read from.
var destinationRules = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}

// WatcherOptions configures a Watcher.
type WatcherOptions struct {
	// Domain is the clusters' DNS domain; "cluster.local" if empty.
	Domain string
	// OnChange is called (from informer goroutines; it must not block) after
	// any change that may alter the Topology.
	OnChange func()
	Logger   *slog.Logger
	// Resync is the informers' resync period; 0 disables it.
	Resync time.Duration
	// ConfigCluster names the cluster istiod reads its configuration from
	// (the primary): Topology.ConfigCluster.
	ConfigCluster string
}

// Watcher keeps informers on Nodes, Services, EndpointSlices, Pod metadata
// and DestinationRules in every member cluster; Snapshot builds the
// Topology from their caches. SetClusters changes the member set while it
// runs (RemoteIstio added or removed).
type Watcher struct {
	opts WatcherOptions

	mu       sync.RWMutex
	clusters map[string]*clusterWatch
	ctx      context.Context // set by Start; nil before

	// deltaMu guards the parts' updates and what Changes returned last:
	// its Topology, the clusters in it, and what changed since.
	deltaMu      sync.Mutex
	last         *Topology
	lastClusters []string
	pending      map[string]bool
	pendingAll   bool
}

type clusterWatch struct {
	name string
	// key fingerprints the client config; a changed key restarts the watch.
	key    string
	cancel context.CancelFunc
	// synced is closed once every informer of the cluster has synced; a
	// cluster added by SetClusters enters Snapshot only then, so a slow or
	// unreachable new member never shows as a cluster without endpoints.
	synced   chan struct{}
	factory  informers.SharedInformerFactory
	meta     metadatainformer.SharedInformerFactory
	dyn      dynamicinformer.DynamicSharedInformerFactory // nil without Istio's CRDs
	nodes    cache.SharedIndexInformer
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
	pods     cache.SharedIndexInformer
	drs      cache.SharedIndexInformer
	// namespaces (metadata) give istiod's namespace-level traffic
	// distribution annotation; nil where the server may not list them.
	namespaces cache.SharedIndexInformer
	// slicesBySvc are the EndpointSlices by Service, kept by the slices'
	// event handler; the builds read slices from it, not from the cache,
	// so the cluster has synced only once the handler has seen the
	// initial list (slicesIndexed).
	slicesBySvc   sliceIndex
	slicesIndexed cache.InformerSynced

	// dirty is what the informers' handlers saw change since the part
	// was last brought up to date; built is the cluster's share of the
	// Topology (guarded by partMu).
	dirtyMu sync.Mutex
	dirty   dirtySet
	partMu  sync.Mutex
	built   *part
}

// dirtySet is what changed in one cluster: everything (a Node; before the
// first build), the users' rules, or the Services named (directly, by
// one of their Pods, or by their namespace).
type dirtySet struct {
	all, rules                 bool
	services, pods, namespaces map[string]bool
}

func (d *dirtySet) mark(set *map[string]bool, key string) {
	if *set == nil {
		*set = map[string]bool{}
	}
	(*set)[key] = true
}

// NewWatcher returns a Watcher over clusters (name → client config), e.g.
// from --cluster flags or, later, the operator's RemoteIstio members.
func NewWatcher(clusters map[string]*rest.Config, opts WatcherOptions) (*Watcher, error) {
	if len(clusters) == 0 {
		return nil, fmt.Errorf("topology: no member clusters given; give at least one cluster and its client configuration")
	}
	if opts.Domain == "" {
		opts.Domain = "cluster.local"
	}
	if opts.OnChange == nil {
		opts.OnChange = func() {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Watcher{opts: opts, clusters: map[string]*clusterWatch{}}
	for name, cfg := range clusters {
		cw, err := w.newClusterWatch(name, cfg)
		if err != nil {
			return nil, err
		}
		w.clusters[name] = cw
	}
	return w, nil
}

func (w *Watcher) newClusterWatch(name string, cfg *rest.Config) (*clusterWatch, error) {
	key := ConfigKey(cfg)
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("topology: client for cluster %s: %w", name, err)
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("topology: metadata client for cluster %s: %w", name, err)
	}
	cw := &clusterWatch{name: name, key: key, synced: make(chan struct{}), dirty: dirtySet{all: true}}
	cw.factory = informers.NewSharedInformerFactory(kube, w.opts.Resync)
	cw.meta = metadatainformer.NewSharedInformerFactory(mc, w.opts.Resync)
	cw.nodes = cw.factory.Core().V1().Nodes().Informer()
	cw.services = cw.factory.Core().V1().Services().Informer()
	cw.slices = cw.factory.Discovery().V1().EndpointSlices().Informer()
	cw.pods = cw.meta.ForResource(corev1.SchemeGroupVersion.WithResource("pods")).Informer()
	// Keep only what the topology reads (cache.go): Services and
	// EndpointSlices, one of each per Service and cluster, are most of what
	// the watcher holds.
	_ = cw.nodes.SetTransform(trimNode)
	_ = cw.pods.SetTransform(trimPod)
	_ = cw.services.SetTransform(trimService)
	_ = cw.slices.SetTransform(trimSlice)
	_, _ = cw.nodes.AddEventHandler(w.handler(cw, func(d *dirtySet, _ any) { d.all = true }, func(old, cur any) bool {
		o, ok1 := old.(*corev1.Node)
		n, ok2 := cur.(*corev1.Node)
		return !ok1 || !ok2 || NodeLocalityLabel(o.Labels) != NodeLocalityLabel(n.Labels)
	}, nil))
	_, _ = cw.services.AddEventHandler(w.handler(cw, func(d *dirtySet, obj any) {
		if s, ok := obj.(*cachedService); ok {
			d.mark(&d.services, serviceKey(s.namespace, s.name))
		}
	}, nil, nil))
	reg, err := cw.slices.AddEventHandler(w.sliceHandler(cw))
	if err != nil {
		return nil, fmt.Errorf("topology: watching EndpointSlices of cluster %s: %w", name, err)
	}
	cw.slicesIndexed = reg.HasSynced
	_, _ = cw.pods.AddEventHandler(w.handler(cw, func(d *dirtySet, obj any) {
		if m, err := meta.Accessor(obj); err == nil {
			d.mark(&d.pods, serviceKey(m.GetNamespace(), m.GetName()))
		}
	}, func(old, cur any) bool {
		o, ok1 := old.(*metav1.PartialObjectMetadata)
		n, ok2 := cur.(*metav1.PartialObjectMetadata)
		if !ok1 || !ok2 {
			return true
		}
		ov, _, _ := PodLocalityLabel(o.Labels)
		nv, _, _ := PodLocalityLabel(n.Labels)
		return ov != nv
	}, nil))

	// Namespaces, for the namespace-level traffic-distribution annotation
	// istiod reads after the Service's own settings; only where the server
	// may list and watch them (an older RBAC), so that a missing permission
	// never keeps the cluster from syncing.
	if mayWatchNamespaces(kube) {
		cw.namespaces = cw.meta.ForResource(corev1.SchemeGroupVersion.WithResource("namespaces")).Informer()
		_ = cw.namespaces.SetTransform(trimNamespace)
		_, _ = cw.namespaces.AddEventHandler(w.handler(cw, func(d *dirtySet, obj any) {
			if m, err := meta.Accessor(obj); err == nil {
				d.mark(&d.namespaces, m.GetName())
			}
		}, func(old, cur any) bool {
			o, ok1 := old.(*metav1.PartialObjectMetadata)
			n, ok2 := cur.(*metav1.PartialObjectMetadata)
			return !ok1 || !ok2 || o.Annotations[AnnotationTrafficDistribution] != n.Annotations[AnnotationTrafficDistribution]
		}, nil))
	} else {
		w.opts.Logger.Info("may not list and watch namespaces in cluster; the namespace annotation "+AnnotationTrafficDistribution+" is not read there (grant get, list, watch on namespaces)", "cluster", name)
	}

	// Users' DestinationRules, when Istio's CRDs are installed.
	if _, err := kube.Discovery().ServerResourcesForGroupVersion(destinationRules.GroupVersion().String()); err == nil {
		dc, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("topology: dynamic client for cluster %s: %w", name, err)
		}
		cw.dyn = dynamicinformer.NewDynamicSharedInformerFactory(dc, w.opts.Resync)
		cw.drs = cw.dyn.ForResource(destinationRules).Informer()
		_ = cw.drs.SetTransform(stripManagedFields)
		_, _ = cw.drs.AddEventHandler(w.handler(cw, func(d *dirtySet, _ any) { d.rules = true }, nil, nil))
	} else {
		w.opts.Logger.Info("no DestinationRule API in cluster; users' rules there are not considered", "cluster", name, "err", err)
	}
	return cw, nil
}

// handler records what an event changed in cw (mark, called for the
// object, and for the old object of an update) and calls OnChange, on
// add, delete, and on updates that relevant reports as relevant (all if
// nil). index, if set, is first told of every event (old nil on add, cur
// nil on delete), under the same lock as mark.
func (w *Watcher) handler(cw *clusterWatch, mark func(d *dirtySet, obj any), relevant func(old, cur any) bool, index func(old, cur any)) cache.ResourceEventHandler {
	unwrap := func(o any) any {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			return t.Obj
		}
		return o
	}
	changed := func(old, cur any, mustMark bool) {
		if !mustMark && index == nil {
			return
		}
		old, cur = unwrap(old), unwrap(cur)
		cw.dirtyMu.Lock()
		if index != nil {
			index(old, cur)
		}
		if mustMark {
			for _, o := range []any{old, cur} {
				if o != nil {
					mark(&cw.dirty, o)
				}
			}
		}
		cw.dirtyMu.Unlock()
		if mustMark {
			w.opts.OnChange()
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { changed(nil, obj, true) },
		UpdateFunc: func(old, cur any) {
			changed(old, cur, relevant == nil || relevant(old, cur))
		},
		DeleteFunc: func(obj any) { changed(obj, nil, true) },
	}
}

// sliceHandler is the EndpointSlices' handler: it keeps the index by
// Service (cw.slicesBySvc) as it marks the Services changed, so a build
// reads the slices the handler saw.
func (w *Watcher) sliceHandler(cw *clusterWatch) cache.ResourceEventHandler {
	return w.handler(cw, func(d *dirtySet, obj any) {
		if es, ok := obj.(*cachedSlice); ok && es.service != "" {
			d.mark(&d.services, es.service)
		}
	}, nil, func(old, cur any) {
		o, _ := old.(*cachedSlice)
		c, _ := cur.(*cachedSlice)
		cw.slicesBySvc.replace(o, c)
	})
}

func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Start starts the informers; they run until ctx ends (or their cluster is
// removed by SetClusters). Call WaitForSync before the first Snapshot.
func (w *Watcher) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctx = ctx
	for _, cw := range w.clusters {
		w.startCluster(cw)
	}
}

// startCluster runs cw's informers under a child of w.ctx; w.mu is held.
func (w *Watcher) startCluster(cw *clusterWatch) {
	ctx, cancel := context.WithCancel(w.ctx)
	cw.cancel = cancel
	cw.factory.Start(ctx.Done())
	cw.meta.Start(ctx.Done())
	if cw.dyn != nil {
		cw.dyn.Start(ctx.Done())
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), cw.hasSynced()...) {
			close(cw.synced)
			w.opts.OnChange()
		}
	}()
}

func (cw *clusterWatch) hasSynced() []cache.InformerSynced {
	syncs := []cache.InformerSynced{cw.nodes.HasSynced, cw.services.HasSynced, cw.slices.HasSynced, cw.slicesIndexed, cw.pods.HasSynced}
	if cw.drs != nil {
		syncs = append(syncs, cw.drs.HasSynced)
	}
	if cw.namespaces != nil {
		syncs = append(syncs, cw.namespaces.HasSynced)
	}
	return syncs
}

// mayWatchNamespaces asks the API server (SelfSubjectAccessReview) whether
// the client may list and watch namespaces; an error counts as no.
func mayWatchNamespaces(kube kubernetes.Interface) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, verb := range []string{"list", "watch"} {
		r, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "namespaces"}},
		}, metav1.CreateOptions{})
		if err != nil || !r.Status.Allowed {
			return false
		}
	}
	return true
}

// WaitForSync waits until the caches of every current cluster have synced,
// or fails when ctx ends.
func (w *Watcher) WaitForSync(ctx context.Context) error {
	w.mu.RLock()
	cws := make([]*clusterWatch, 0, len(w.clusters))
	for _, cw := range w.clusters {
		cws = append(cws, cw)
	}
	w.mu.RUnlock()
	for _, cw := range cws {
		select {
		case <-cw.synced:
		case <-ctx.Done():
			return fmt.Errorf("topology: caches of cluster %s did not sync: %w (check that the kubeconfig reaches the API server and may list nodes, services, endpointslices, pods)", cw.name, ctx.Err())
		}
	}
	return nil
}

// Clusters returns the names of the current member clusters and whether
// each has synced (is part of Snapshot).
func (w *Watcher) Clusters() map[string]bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make(map[string]bool, len(w.clusters))
	for name, cw := range w.clusters {
		out[name] = isClosed(cw.synced)
	}
	return out
}

// SetClusters makes clusters the member set: watches of clusters no longer
// listed stop and leave the Snapshot at once; new clusters (and clusters
// whose config changed, by ConfigKey) start watching and join the Snapshot
// once their caches synced. OnChange is called when the set changed. A
// cluster whose watch cannot be built is left out and reported in the
// error; the others are still applied.
func (w *Watcher) SetClusters(clusters map[string]*rest.Config) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	for name, cw := range w.clusters {
		if cfg, ok := clusters[name]; ok && ConfigKey(cfg) == cw.key {
			continue
		}
		if cw.cancel != nil {
			cw.cancel()
		}
		delete(w.clusters, name)
		changed = true
		w.opts.Logger.Info("member cluster removed from the topology", "cluster", name)
	}
	var errs []string
	names := make([]string, 0, len(clusters))
	for name := range clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := w.clusters[name]; ok {
			continue
		}
		cw, err := w.newClusterWatch(name, clusters[name])
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		w.clusters[name] = cw
		if w.ctx != nil {
			w.startCluster(cw)
		}
		changed = true
		w.opts.Logger.Info("member cluster added to the topology", "cluster", name, "host", clusters[name].Host)
	}
	if changed {
		w.opts.OnChange()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// ConfigKey fingerprints what in a client config decides which cluster is
// reached and as whom.
func ConfigKey(cfg *rest.Config) string {
	h := sha256.New()
	for _, s := range []string{cfg.Host, cfg.APIPath, cfg.Username, cfg.Password, cfg.BearerToken, cfg.BearerTokenFile,
		cfg.Impersonate.UserName, cfg.CertFile, cfg.KeyFile, cfg.CAFile, cfg.ServerName,
		string(cfg.CertData), string(cfg.KeyData), string(cfg.CAData), fmt.Sprint(cfg.Insecure)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Snapshot builds the current Topology from the informers' caches. Each
// cluster's share is brought up to date with what changed since it was
// last (see Changes); the result shares nothing with the watcher.
func (w *Watcher) Snapshot() *Topology {
	w.deltaMu.Lock()
	defer w.deltaMu.Unlock()
	return merge(w.update(), w.opts.ConfigCluster)
}

// Delta says which Services of a Topology may differ from the one before
// it: All, or the Services named (namespace/name; added, changed or
// removed). With All false the clusters, their nodes, the users' rules
// and the config cluster are unchanged.
type Delta struct {
	All      bool
	Services []string
}

// Changes returns the current Topology and what changed since the one it
// returned last (All the first time, after a member joined or left, a
// Node's locality or a user's DestinationRule changed). A change of one
// Service costs the rebuild of that Service only: its cluster's share and
// the merged Topology are updated in place of being rebuilt. The Topology
// shares its unchanged Services with the previous one: treat it as
// read-only. One consumer (the rule writer) calls it.
func (w *Watcher) Changes() (*Topology, Delta) {
	w.deltaMu.Lock()
	defer w.deltaMu.Unlock()
	parts := w.update()
	names := make([]string, len(parts))
	for i, p := range parts {
		names[i] = p.cluster.Name
	}
	all := w.pendingAll || w.last == nil || !slices.Equal(names, w.lastClusters)
	var t *Topology
	var d Delta
	if all {
		t, d = merge(parts, w.opts.ConfigCluster), Delta{All: true}
	} else {
		keys := slices.Sorted(maps.Keys(w.pending))
		t, d = mergeKeys(w.last, parts, keys), Delta{Services: keys}
	}
	w.last, w.lastClusters, w.pending, w.pendingAll = t, names, nil, false
	return t, d
}

// update brings the part of every synced cluster up to date, in cluster
// name order, recording in w.pending what changed; w.deltaMu is held.
func (w *Watcher) update() []*part {
	w.mu.RLock()
	cws := make([]*clusterWatch, 0, len(w.clusters))
	for _, cw := range w.clusters {
		if isClosed(cw.synced) {
			cws = append(cws, cw)
		}
	}
	w.mu.RUnlock()
	slices.SortFunc(cws, func(a, b *clusterWatch) int { return cmp.Compare(a.name, b.name) })
	parts := make([]*part, len(cws))
	for i, cw := range cws {
		p, all, keys := cw.part(w.opts.Domain)
		parts[i] = p
		if all {
			w.pendingAll = true
		}
		for _, k := range keys {
			if w.pending == nil {
				w.pending = map[string]bool{}
			}
			w.pending[k] = true
		}
	}
	return parts
}

// part returns the cluster's share of the Topology, brought up to date
// with what its informers saw change since the last call: rebuilt when
// all did (a Node, the first call) or the users' rules did, else only the
// Services changed (returned).
func (cw *clusterWatch) part(domain string) (p *part, all bool, keys []string) {
	// Take the changes before reading the caches: an event racing with the
	// update is marked again and applied by the next call.
	cw.dirtyMu.Lock()
	d := cw.dirty
	cw.dirty = dirtySet{}
	cw.dirtyMu.Unlock()
	cw.partMu.Lock()
	defer cw.partMu.Unlock()
	in := cw.objects(domain)
	switch {
	case d.all || cw.built == nil:
		in.nodes = listAs[*corev1.Node](cw.nodes)
		in.services = listAs[*cachedService](cw.services)
		in.slices = cw.slicesBySvc.all()
		if cw.drs != nil {
			in.rules = listAs[*unstructured.Unstructured](cw.drs)
		}
		cw.built = buildPart(in)
		return cw.built, true, nil
	case d.rules:
		if cw.drs != nil {
			in.rules = listAs[*unstructured.Unstructured](cw.drs)
		}
		cw.built.rules = buildRules(in)
		all = true
	}
	keys = cw.built.keysOf(d.services, d.pods, d.namespaces)
	updatePart(cw.built, in, keys)
	return cw.built, all, keys
}

// objects gives buildPart and updatePart the cluster's caches: lookups of
// Pods, namespaces, a Service and its EndpointSlices (slicesBySvc).
func (cw *clusterWatch) objects(domain string) clusterObjects {
	in := clusterObjects{name: cw.name, domain: domain, pod: func(key string) (*metav1.PartialObjectMetadata, bool) {
		o, ok, _ := cw.pods.GetStore().GetByKey(key)
		pm, _ := o.(*metav1.PartialObjectMetadata)
		return pm, ok && pm != nil
	}}
	if cw.namespaces != nil {
		in.namespace = func(name string) map[string]string {
			o, _, _ := cw.namespaces.GetStore().GetByKey(name)
			if pm, ok := o.(*metav1.PartialObjectMetadata); ok {
				return pm.Annotations
			}
			return nil
		}
	}
	in.serviceByKey = func(key string) *cachedService {
		o, _, _ := cw.services.GetStore().GetByKey(key)
		s, _ := o.(*cachedService)
		return s
	}
	in.slicesByService = cw.slicesBySvc.of
	return in
}

// listAs lists an informer's cache as T.
func listAs[T any](inf cache.SharedIndexInformer) []T {
	objs := inf.GetStore().List()
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}
