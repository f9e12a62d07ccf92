package rulesync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/csaupgrade"

	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
)

// Defaults for Options.
const (
	DefaultNamespace   = "istio-system"
	DefaultDebounce    = 20 * time.Millisecond
	DefaultMaxDebounce = 250 * time.Millisecond
	// DefaultHoldDown is how long a write that changes only failover
	// entries no request uses now waits (Options.HoldDown): longer than istiod's
	// default debounce (PILOT_DEBOUNCE_AFTER, 100 ms) and its push, so
	// that istiod pushes the endpoint change behind it first, alone.
	DefaultHoldDown = 300 * time.Millisecond
	// FieldManager owns the fields of the rules the server writes.
	FieldManager = "meshfleet-locality"
	// maxRetry bounds the backoff after failed writes.
	maxRetry = 30 * time.Second
)

// GVR is the resource the rules are written as.
var GVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}

// Options configures a Server.
type Options struct {
	// Config reaches the primary cluster's API server, where the rules are
	// written and istiod reads them (required).
	Config *rest.Config
	// Namespace receives every generated rule (DefaultNamespace if empty)
	// but those merged beside a user's subsets-only rule, which go into
	// that rule's namespace.
	// It should be istiod's root namespace: a rule there applies to its
	// host from every namespace, after any rule in the client's or the
	// service's namespace. Writing into one namespace keeps the server's
	// write permission to one Role there.
	Namespace string
	// Snapshot returns the current topology (required unless Changes is
	// set); called after each debounced burst of Notify calls.
	Snapshot func() *topology.Topology
	// Changes, if set, is called instead of Snapshot: the current topology
	// and what changed since its previous call (topology.Watcher.Changes),
	// so that a change of one Service translates, groups and plans that
	// Service's namespace only.
	Changes func() (*topology.Topology, topology.Delta)
	// Policy returns the current mesh-wide policy; the zero Policy if nil.
	Policy func() locality.Policy
	// Members returns each member cluster and whether its caches have
	// synced since start (required). Until every member has, existing
	// rules are kept as they are (see Decide).
	Members func() map[string]bool
	// Debounce is the quiet period that ends a burst of changes;
	// MaxDebounce bounds how long a continuous burst delays a write.
	Debounce, MaxDebounce time.Duration
	// HoldDown is how long the write of a rule waits when it changes
	// nothing but failover entries no request uses now (Deferrable,
	// DeferrableMove: targets that readiness moved, for regions served
	// locally or left with one ready region to go to), counted from the
	// first sync that found it so; a sync in between that writes the rule
	// for another reason writes it whole. Users' changes never wait (see
	// holdBack). 0 is DefaultHoldDown; a negative value writes every
	// change at once.
	HoldDown time.Duration
	// Lease, if set, elects one writer among the replicas; without it this
	// server always writes (one replica, tests).
	Lease      *Lease
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Identity names this replica in the published summary (the Lease's
	// identity if a Lease is set; the host name if both are empty).
	Identity string
	// GroupMin is how many Services of a namespace must share one rule
	// before they get one namespace-wide rule instead (see Group): 0 is
	// DefaultGroupMin, a negative value writes one rule per Service.
	GroupMin int
	// OnWrite, if set, is called after a plan's writes all succeeded, with
	// the number of writes and the time since the change behind them.
	OnWrite func(writes int, latency time.Duration)
}

// Server keeps the generated DestinationRules in the primary cluster in
// step with the topology.
type Server struct {
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	rules    dynamic.NamespaceableResourceInterface
	kube     kubernetes.Interface
	informer cache.SharedIndexInformer
	factory  dynamicinformer.DynamicSharedInformerFactory
	notify   chan time.Time
	leader   atomic.Bool
	// identity names this replica in the summary; republish forces the
	// next summary to be written (this replica just became the writer).
	identity   string
	republish  atomic.Bool
	configMaps corev1client.ConfigMapInterface

	syncMu sync.Mutex // one Sync at a time; guards the fields below
	retry  time.Duration
	// holdDown is Options.HoldDown (≤ 0: none), changeable by SetHoldDown.
	holdDown atomic.Int64
	// deferred holds the rules whose write waits for the hold-down, and
	// holdTimer syncs again when the first of them is due.
	deferred  map[string]deferredWrite
	holdTimer *time.Timer
	// settings fingerprints each Service's own settings (settingsOf), so
	// that a change of them is never deferred.
	settings map[string]string
	inputs   string // the last translation's Result.Inputs
	// translated is the last translation (TranslateDelta builds on it),
	// placed its rules placed and grouped; planAll makes the next plan
	// compare every rule (at start, after a failed write, a new leader, a
	// change of the members' sync state), not only the rules of the
	// namespaces that changed; membersSeen is the sync state of the last
	// plan; hashes caches the rules' content hashes.
	translated  *locality.Result
	placed      *placed
	planAll     bool
	membersSeen string
	hashes      *hashCache
	unsynced    string // members not synced at the last Sync, joined
	recent      map[string]recentWrite
	// unsyncedSince is when each member not synced was first seen so;
	// published is the summary last written.
	unsyncedSince map[string]time.Time
	published     string

	mu   sync.Mutex
	last *placed
	// touched names the server's rules its informer saw change since the
	// last plan (someone edited or deleted one, or a write landed): the
	// next plan compares them too.
	touched   map[string]bool
	lastErr   error // of the last translation
	writeErr  error // of the last plan's writes
	plan      Plan
	members   map[string]bool
	conflicts []string
	lastWrite time.Time
	// deferredNames are the rules whose write waits for the hold-down.
	deferredNames []string
}

// New returns a Server; call Run to start it.
func New(opts Options) (*Server, error) {
	if opts.Config == nil || (opts.Snapshot == nil && opts.Changes == nil) || opts.Members == nil {
		return nil, errors.New("rulesync: Options.Config, Snapshot (or Changes) and Members are required")
	}
	if opts.Changes == nil {
		snapshot := opts.Snapshot
		opts.Changes = func() (*topology.Topology, topology.Delta) { return snapshot(), topology.Delta{All: true} }
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Policy == nil {
		opts.Policy = func() locality.Policy { return locality.Policy{} }
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxDebounce < opts.Debounce {
		opts.MaxDebounce = max(DefaultMaxDebounce, opts.Debounce)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.GroupMin == 0 {
		opts.GroupMin = DefaultGroupMin
	}
	if opts.HoldDown == 0 {
		opts.HoldDown = DefaultHoldDown
	}
	cfg := rest.CopyConfig(opts.Config)
	if cfg.QPS == 0 {
		// The first write of a large mesh is one request per service.
		cfg.QPS, cfg.Burst = 300, 600
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("rulesync: client for the primary (%s): %w", cfg.Host, err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("rulesync: client for the primary (%s): %w", cfg.Host, err)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		metrics:  newMetrics(opts.Registerer),
		rules:    dc.Resource(GVR),
		kube:     kc,
		notify:   make(chan time.Time, 1),
		recent:   map[string]recentWrite{},
		settings: map[string]string{},
		planAll:  true,
		hashes:   newHashCache(),

		identity:      opts.Identity,
		configMaps:    kc.CoreV1().ConfigMaps(opts.Namespace),
		unsyncedSince: map[string]time.Time{},
	}
	s.holdDown.Store(int64(opts.HoldDown))
	if opts.Lease != nil && opts.Lease.Identity != "" {
		s.identity = opts.Lease.Identity
	}
	if s.identity == "" {
		s.identity, _ = os.Hostname()
	}
	selector := labels.SelectorFromSet(labels.Set{locality.LabelManagedBy: locality.ManagedBy}).String()
	// Every namespace: a rule istiod merges into a user's rule lives in
	// that rule's namespace (locality.AnnotationMergedWith).
	s.factory = dynamicinformer.NewFilteredDynamicSharedInformerFactory(dc, 0, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	s.informer = s.factory.ForResource(GVR).Informer()
	if err := s.informer.AddIndexers(cache.Indexers{indexByName: func(obj any) ([]string, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		return []string{m.GetName()}, nil
	}}); err != nil {
		return nil, fmt.Errorf("rulesync: indexing the rules by name: %w", err)
	}
	_ = s.informer.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
		}
		return obj, nil
	})
	// Someone edited or deleted one of our rules: put it back.
	touch := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if m, err := meta.Accessor(obj); err == nil {
			s.mu.Lock()
			if s.touched == nil {
				s.touched = map[string]bool{}
			}
			s.touched[m.GetName()] = true
			s.mu.Unlock()
		}
		s.Notify()
	}
	_, _ = s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    touch,
		UpdateFunc: func(_, cur any) { touch(cur) },
		DeleteFunc: touch,
	})
	return s, nil
}

// Notify tells the server the topology changed. It never blocks; bursts
// are coalesced (the consumer reads the latest state, not every event).
func (s *Server) Notify() {
	select {
	case s.notify <- time.Now():
	default: // a change is already pending; its (earlier) time is kept
	}
}

// Run watches the server's own rules and writes the translation after
// each debounced burst of changes, until ctx ends. It never fails because
// a cluster is unreachable: writes are retried with backoff and the rules
// already written stay as they are.
func (s *Server) Run(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
			s.Notify()
		}
	}()
	if s.opts.Lease != nil {
		go s.lead(ctx)
	} else {
		s.setLeader(true)
	}
	s.Notify()
	s.debounceLoop(ctx)
	return nil
}

func (s *Server) setLeader(on bool) {
	s.leader.Store(on)
	if on {
		s.republish.Store(true)
		s.syncMu.Lock()
		s.planAll = true
		s.syncMu.Unlock()
	}
	v := 0.0
	if on {
		v = 1
	}
	s.metrics.leader.Set(v)
}

// debounceLoop syncs a change that follows a quiet period (no change for
// Debounce) at once: a single change, such as a zone's endpoints going not
// ready, is not delayed. Changes that follow it within Debounce are a
// burst: they are coalesced and synced once Debounce passes without
// another (at most MaxDebounce after the first of them).
func (s *Server) debounceLoop(ctx context.Context) {
	var last time.Time // when the previous change was seen
	for {
		var first time.Time
		select {
		case <-ctx.Done():
			return
		case first = <-s.notify:
		}
		quietBefore := first.Sub(last) >= s.opts.Debounce
		last = first
		if !quietBefore && !s.waitQuiet(ctx, first, &last) {
			return
		}
		if err := s.sync(ctx, first, true); err != nil {
			s.log.Error("locality rules not fully written; the rules in the cluster stay as they are", "err", err)
		}
	}
}

// waitQuiet waits until Debounce passes without a change, or MaxDebounce
// after first; last is updated with each change seen. It returns false if
// ctx ended.
func (s *Server) waitQuiet(ctx context.Context, first time.Time, last *time.Time) bool {
	quiet := time.NewTimer(s.opts.Debounce)
	defer quiet.Stop()
	deadline := time.NewTimer(time.Until(first.Add(s.opts.MaxDebounce)))
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case *last = <-s.notify:
			quiet.Reset(s.opts.Debounce)
		case <-quiet.C:
			return true
		case <-deadline.C:
			return true
		}
	}
}

// SetHoldDown changes Options.HoldDown (≤ 0: none) from the next sync on
// (benchmarks compare the two).
func (s *Server) SetHoldDown(d time.Duration) { s.holdDown.Store(int64(d)) }

// Sync translates the current topology and, on the leader once its view
// of its own rules has synced, writes what changed; changedAt is when the
// change was first seen. A failed translation writes nothing. Sync writes
// every change at once, those the hold-down defers too (tests and
// benchmarks call it to flush); Run's own syncs defer (Options.HoldDown).
func (s *Server) Sync(ctx context.Context, changedAt time.Time) error {
	return s.sync(ctx, changedAt, false)
}

// sync is Sync; with hold it defers the updates Deferrable allows.
func (s *Server) sync(ctx context.Context, changedAt time.Time, hold bool) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	members := s.opts.Members()
	var unsynced []string
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if !members[name] {
			unsynced = append(unsynced, name)
		}
	}
	s.metrics.unsynced.Set(float64(len(unsynced)))
	s.trackUnsynced(members, time.Now())
	if s.leader.Load() {
		// The writer publishes its state after each sync, whatever its outcome.
		defer func() {
			if s.informer.HasSynced() {
				s.publish(ctx)
			}
		}()
	}
	if u := strings.Join(unsynced, ","); u != s.unsynced {
		if u != "" {
			s.log.Warn("member clusters not synced since start (unreachable or slow); the rules written stay as they are until they sync", "members", unsynced)
		} else if s.unsynced != "" {
			s.log.Info("every member cluster synced", "members", len(members))
		}
		s.unsynced = u
	}
	start := time.Now()
	topo, delta := s.opts.Changes()
	policy := s.opts.Policy()
	res, delta, err := locality.TranslateDelta(s.translated, topo, policy, delta)
	s.metrics.translate.Observe(time.Since(start).Seconds())
	s.mu.Lock()
	s.members = members
	s.lastErr = err
	s.mu.Unlock()
	if err != nil {
		s.translated = nil // the next translation starts afresh
		return fmt.Errorf("translating the topology: %w", err)
	}
	prevPlaced := s.placed
	if prevPlaced == nil {
		delta = topology.Delta{All: true}
		prevPlaced = &placed{rulesNamespace: s.opts.Namespace, groupMin: s.opts.GroupMin}
	}
	next, affected, err := prevPlaced.update(res, delta)
	if err != nil {
		s.translated, s.placed = nil, nil
		return fmt.Errorf("grouping the rules: %w", err)
	}
	s.translated, s.placed = res, next
	userChanged := settingsChanged(s.settings, topo, delta)
	inputs := res.Inputs()
	allChanged := inputs != s.inputs
	s.inputs = inputs
	s.mu.Lock()
	s.last = next
	touched := s.touched
	s.touched = nil
	s.mu.Unlock()
	s.logWarnings(res, delta)
	if !s.leader.Load() || !s.informer.HasSynced() {
		s.planAll = true
		s.setDeferred(nil) // the next plan compares every rule
		return nil
	}
	complete := len(members) > 0 && len(unsynced) == 0
	membersKey := strings.Join(slices.Sorted(maps.Keys(members)), ",") + "|" + strings.Join(unsynced, ",")
	all := s.planAll || affected == nil || !complete || membersKey != s.membersSeen
	var live map[string]Live
	var desired []*locality.Rule
	if all {
		live = s.liveRules(nil)
		_, desired = next.result()
		s.metrics.rules.Set(float64(len(live)))
	} else {
		// Only the rules of the Services that changed (as they were and
		// as they are now), and those the informer saw change.
		for name := range touched {
			affected[name] = true
		}
		for name := range s.deferred {
			affected[name] = true
		}
		// liveRules reads each rule's namespace rule too (Decide needs
		// it): compare it with its desired state, else a live namespace
		// rule looks undesired and is deleted.
		for name := range maps.Clone(affected) {
			if g := groupOf(name); g != "" {
				affected[g] = true
			}
		}
		for _, name := range slices.Sorted(maps.Keys(affected)) {
			if r := next.ruleNamed(name); r != nil {
				desired = append(desired, r)
			}
		}
		live = s.liveRules(affected)
		s.metrics.rules.Set(float64(len(s.informer.GetIndexer().ListKeys())))
	}
	plan, err := decide(live, desired, members, s.hashes.rule)
	if err != nil {
		return err
	}
	// Every rule deferred before was compared: keep deferring those that
	// still may (until due), write the others.
	var deferred map[string]deferredWrite
	if hold {
		plan, deferred, changedAt = s.holdBack(plan, topo, next, userChanged, allChanged, changedAt)
	}
	s.setDeferred(deferred)
	if all {
		s.hashes.keep(desired, live)
	}
	s.membersSeen = membersKey
	if all {
		s.metrics.held.Set(float64(len(plan.Held)))
		s.mu.Lock()
		s.plan = plan
		s.mu.Unlock()
	}
	if plan.Writes() == 0 {
		s.planAll = false
		return nil
	}
	conflicts, err := s.write(ctx, plan)
	s.metrics.conflicts.Set(float64(len(conflicts)))
	s.mu.Lock()
	s.conflicts = conflicts
	s.writeErr = err
	if err == nil {
		s.lastWrite = time.Now()
	}
	s.mu.Unlock()
	if err != nil {
		s.planAll = true
		s.scheduleRetry()
		return err
	}
	s.planAll = false
	s.retry = 0
	lat := time.Since(changedAt)
	s.metrics.written.Observe(lat.Seconds())
	compared := "every rule"
	if !all {
		compared = "the rules of the namespaces that changed"
	}
	s.log.Info("DestinationRules written", "created", len(plan.Create), "updated", len(plan.Update), "deleted", len(plan.Delete),
		"unchanged", plan.Unchanged, "compared", compared, "since change", lat)
	if s.opts.OnWrite != nil {
		s.opts.OnWrite(plan.Writes(), lat)
	}
	return nil
}

// deferredWrite is a rule write held back since the first sync that
// deferred it, for a change first seen at changedAt.
type deferredWrite struct{ since, changedAt time.Time }

// holdBack takes out of p the writes that may wait for the hold-down and
// are not due yet, and returns them; changedAt becomes the earliest change
// behind the writes left. Those are updates Deferrable allows (given the
// Services of t under each rule placed in pl), and a Service's move
// between its own rule and its namespace rule (a create or delete of its
// rule) that DeferrableMove allows while the namespace rule itself is not
// written. Nothing waits after a change of every rule's inputs (all: the
// policy, the nodes' regions, users' rules), nor a rule of a Service that
// is new or whose own settings changed (userChanged): those are users'
// changes. Called under syncMu, after liveRules.
func (s *Server) holdBack(p Plan, t *topology.Topology, pl *placed, userChanged map[string]bool, all bool, changedAt time.Time) (Plan, map[string]deferredWrite, time.Time) {
	hd := time.Duration(s.holdDown.Load())
	if hd <= 0 || p.Writes() == 0 || all {
		return p, nil, changedAt
	}
	now := time.Now()
	held := map[string]deferredWrite{}
	idx := readyIndex{t: t}
	written := map[string]bool{}
	for _, w := range p.Create {
		written[w.Rule.Metadata.Name] = true
	}
	for _, w := range p.Update {
		written[w.Rule.Metadata.Name] = true
	}
	for _, d := range p.Delete {
		written[d.Name] = true
	}
	// hold reports whether the write of name may wait, given whether the
	// rule's change allows it; it records it if so.
	hold := func(name string, allows func() bool) bool {
		d, was := s.deferred[name]
		if !was {
			d = deferredWrite{since: now, changedAt: changedAt}
		}
		if now.Sub(d.since) < hd && allows() {
			held[name] = d
			if !was {
				s.metrics.deferredTotal.Inc()
			}
			return true
		}
		if was && d.changedAt.Before(changedAt) {
			changedAt = d.changedAt
		}
		return false
	}
	// moving returns the Service whose rule name is created or deleted as
	// it leaves or rejoins its namespace rule, that rule as it is live, and
	// the Service's readiness; ok false when the write is not such a move
	// or the namespace rule is written too.
	moving := func(name string) (svc string, group *locality.Rule, ready Ready, ok bool) {
		g := groupOf(name)
		svc = serviceOf(name)
		if g == "" || svc == "" || written[g] || userChanged[svc] {
			return "", nil, nil, false
		}
		if group = s.liveRule(g); group == nil || group.Metadata.Namespace != s.opts.Namespace {
			return "", nil, nil, false
		}
		ready, ok = idx.service(svc)
		return svc, group, ready, ok
	}
	var update []Write
	for _, w := range p.Update {
		name := w.Rule.Metadata.Name
		if !hold(name, func() bool {
			ready, keys := idx.of(pl, name)
			if slices.ContainsFunc(keys, func(k string) bool { return userChanged[k] }) {
				return false
			}
			old := s.liveRule(name)
			ok, _ := Deferrable(old, w.Rule, ready)
			return old != nil && ok
		}) {
			update = append(update, w)
		}
	}
	var create []Write
	for _, w := range p.Create {
		name := w.Rule.Metadata.Name
		if !hold(name, func() bool {
			// The Service leaves its namespace rule, which covers it until
			// its own rule exists.
			_, group, ready, ok := moving(name)
			if !ok || w.Rule.Metadata.Namespace != s.opts.Namespace {
				return false
			}
			ok, _ = DeferrableMove(group, w.Rule, ready)
			return ok
		}) {
			create = append(create, w)
		}
	}
	var del []Delete
	for _, d := range p.Delete {
		if !hold(d.Name, func() bool {
			// The Service rejoins its namespace rule, which covers it once
			// its own rule is gone.
			svc, group, ready, ok := moving(d.Name)
			if !ok || cmp.Or(d.Namespace, s.opts.Namespace) != s.opts.Namespace {
				return false
			}
			ns, _, _ := strings.Cut(svc, "/")
			r := pl.byNS[ns]
			if r == nil {
				return false
			}
			if i, found := findDecision(r.decisions, svc); !found || r.decisions[i].Rule == nil || r.decisions[i].Rule.Metadata.Name != group.Metadata.Name {
				return false // gone, or not under the namespace rule now
			}
			ok, _ = DeferrableMove(s.liveRule(d.Name), group, ready)
			return ok
		}) {
			del = append(del, d)
		}
	}
	p.Create, p.Update, p.Delete = create, update, del
	if len(held) > 0 {
		s.log.Debug("DestinationRule writes deferred: they change only failover entries no request uses now", "rules", len(held), "holdDown", hd)
	}
	return p, held, changedAt
}

// setDeferred records the updates held back, and syncs again when the
// first of them is due.
func (s *Server) setDeferred(m map[string]deferredWrite) {
	if s.holdTimer != nil {
		s.holdTimer.Stop()
		s.holdTimer = nil
	}
	s.deferred = m
	s.metrics.deferred.Set(float64(len(m)))
	s.mu.Lock()
	s.deferredNames = slices.Sorted(maps.Keys(m))
	s.mu.Unlock()
	if len(m) == 0 {
		return
	}
	first := time.Time{}
	for _, d := range m {
		if first.IsZero() || d.since.Before(first) {
			first = d.since
		}
	}
	s.holdTimer = time.AfterFunc(time.Until(first.Add(time.Duration(s.holdDown.Load()))), s.Notify)
}

// liveRule is the rule named name as last written: this server's write
// the informer has not delivered yet, else the informer's object (nil if
// none or unreadable). Called after liveRules compared name.
func (s *Server) liveRule(name string) *locality.Rule {
	if w, ok := s.recent[name]; ok {
		if w.deleted {
			return nil
		}
		return w.rule
	}
	objs, _ := s.informer.GetIndexer().ByIndex(indexByName, name)
	if len(objs) != 1 {
		return nil
	}
	u, ok := objs[0].(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	r, err := ruleOf(u)
	if err != nil {
		return nil
	}
	return r
}

// logWarnings logs the warnings of the decisions that may have changed.
func (s *Server) logWarnings(res *locality.Result, d topology.Delta) {
	ds := res.Decisions
	if !d.All {
		ds = nil
		for _, k := range d.Services {
			if i, ok := slices.BinarySearchFunc(res.Decisions, k, func(d locality.Decision, k string) int { return cmp.Compare(d.Service, k) }); ok {
				ds = append(ds, res.Decisions[i])
			}
		}
	}
	for _, d := range ds {
		for _, w := range d.Warnings {
			s.log.Warn(w)
		}
	}
}

// liveRules reads the server's own rules from its informer: those named
// (with their namespace's rule, for Decide), or all with names nil. A rule
// this server wrote whose write the informer has not delivered yet (it
// still holds the resourceVersion from before the write) is taken as
// written, so a sync right after a write does not write it again.
func (s *Server) liveRules(names map[string]bool) map[string]Live {
	out := map[string]Live{}
	rvs := map[string]string{}
	add := func(o any) {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			return
		}
		out[u.GetName()] = Live{Namespace: u.GetNamespace(), Name: u.GetName(), UID: string(u.GetUID()), Hash: s.hashes.object(u)}
		rvs[u.GetName()] = u.GetResourceVersion()
	}
	if names == nil {
		for _, o := range s.informer.GetStore().List() {
			add(o)
		}
	} else {
		for name := range names {
			for _, n := range []string{name, groupOf(name)} {
				objs, _ := s.informer.GetIndexer().ByIndex(indexByName, n)
				for _, o := range objs {
					add(o)
				}
			}
		}
	}
	for name, w := range s.recent {
		if names != nil && !names[name] && !names[groupOf(name)] {
			continue // not compared in this plan; kept for the next
		}
		if rvs[name] != w.before {
			delete(s.recent, name) // the informer has caught up (or someone else wrote since)
			continue
		}
		if w.deleted {
			delete(out, name)
		} else {
			out[name] = w.live
		}
	}
	return out
}

// recentWrite is a write of this server that its informer may not have
// delivered yet: before is the resourceVersion the informer held when the
// write was planned ("" if it held no object), rule what was written.
type recentWrite struct {
	before  string
	live    Live
	deleted bool
	rule    *locality.Rule
}

// scheduleRetry syncs again after a backoff that doubles up to maxRetry.
func (s *Server) scheduleRetry() {
	s.retry = min(max(2*s.retry, time.Second), maxRetry)
	time.AfterFunc(s.retry, s.Notify)
}

// indexByName indexes the server's rules by name (they are named apart
// whatever their namespace).
const indexByName = "name"

// writeWorkers bounds the writes in flight; client QPS bounds their rate.
const writeWorkers = 16

// write carries out the plan; it returns the names of rules it left alone
// because someone else's object has their name.
func (s *Server) write(ctx context.Context, p Plan) (conflicts []string, err error) {
	before := map[string]string{}
	for _, o := range s.informer.GetStore().List() {
		if u, ok := o.(*unstructured.Unstructured); ok {
			before[u.GetName()] = u.GetResourceVersion()
		}
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, writeWorkers)
	)
	done := func(op, name string, obj *unstructured.Unstructured, rule *locality.Rule, hash string, e error) {
		mu.Lock()
		defer mu.Unlock()
		if e != nil {
			s.metrics.writeErrors.WithLabelValues(op).Inc()
			errs = append(errs, fmt.Errorf("%s DestinationRule %s/%s: %w", op, s.opts.Namespace, name, e))
			return
		}
		s.metrics.writes.WithLabelValues(op).Inc()
		rw := recentWrite{before: before[name], deleted: obj == nil, rule: rule}
		if obj != nil {
			rw.live = Live{Namespace: obj.GetNamespace(), Name: name, UID: string(obj.GetUID()), Hash: hash}
		}
		s.recent[name] = rw
	}
	run := func(f func()) {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f()
		}()
	}
	for _, w := range p.Create {
		run(func() {
			name := w.Rule.Metadata.Name
			obj, err := toObject(w.Rule, w.Hash, "")
			if err == nil {
				obj, err = s.rules.Namespace(w.Rule.Metadata.Namespace).Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
			}
			if err == nil {
				obj, err = s.toApplyManaged(ctx, obj)
			}
			if apierrors.IsAlreadyExists(err) {
				// Ours but not in the informer yet, or someone else's.
				var mine bool
				if obj, mine, err = s.applyIfMine(ctx, w); err == nil && !mine {
					mu.Lock()
					conflicts = append(conflicts, fmt.Sprintf("DestinationRule %s/%s exists and was not made by meshfleet (no label %s=%s): left alone, so host %s gets no locality rule; delete or rename it",
						w.Rule.Metadata.Namespace, name, locality.LabelManagedBy, locality.ManagedBy, w.Rule.Spec.GetHost()))
					mu.Unlock()
					return
				}
			}
			done("create", name, obj, w.Rule, w.Hash, err)
		})
	}
	for _, w := range p.Update {
		run(func() {
			obj, err := s.apply(ctx, w)
			done("update", w.Rule.Metadata.Name, obj, w.Rule, w.Hash, err)
		})
	}
	// Deletes last, and only once every create and update succeeded: a
	// namespace-wide rule goes only after the rules that replace it exist
	// (and per-Service rules only after the namespace rule), so no host is
	// ever left without a rule in between.
	wg.Wait()
	if len(errs) > 0 {
		p.Delete = nil
	}
	for _, d := range p.Delete {
		run(func() {
			uid := types.UID(d.UID)
			ns := cmp.Or(d.Namespace, s.opts.Namespace)
			err := s.rules.Namespace(ns).Delete(ctx, d.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if apierrors.IsNotFound(err) {
				err = nil
			}
			done("delete", d.Name, nil, nil, "", err)
		})
	}
	wg.Wait()
	sort.Strings(conflicts)
	for _, c := range conflicts {
		s.log.Warn(c)
	}
	return conflicts, errors.Join(errs...)
}

// applyIfMine updates the live object named like w if it carries the
// server's label; it reports whether it did.
func (s *Server) applyIfMine(ctx context.Context, w Write) (*unstructured.Unstructured, bool, error) {
	live, err := s.rules.Namespace(w.Rule.Metadata.Namespace).Get(ctx, w.Rule.Metadata.Name, metav1.GetOptions{})
	if err != nil {
		return nil, false, err
	}
	if live.GetLabels()[locality.LabelManagedBy] != locality.ManagedBy {
		return nil, false, nil
	}
	w.UID = string(live.GetUID())
	obj, err := s.apply(ctx, w)
	return obj, true, err
}

// toApplyManaged moves the fields a Create recorded under an Update entry
// of FieldManager into its Apply entry (see apply), right after the
// create: a later change of the rule is then one apply request, not
// three, which is what a change of every rule at once (a Node moved to a
// new region) waits for.
func (s *Server) toApplyManaged(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	patch, err := csaupgrade.UpgradeManagedFieldsPatch(obj, sets.New(FieldManager), FieldManager)
	if err != nil || patch == nil {
		return obj, err
	}
	out, err := s.rules.Namespace(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.JSONPatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("moving the fields written at creation to server-side apply: %w", err)
	}
	return out, nil
}

// apply writes w with server-side apply, only onto the object with w.UID.
//
// A rule is first written with Create (so that someone else's object of
// the same name is never taken over), which records its fields under an
// Update entry of FieldManager. Server-side apply removes only fields
// that no manager but the applier owns, so a field the writer stops
// setting (a failover dropped when the Service asks for a traffic
// distribution) would stay. The first apply onto such an object therefore
// moves the Update entry into the Apply entry (client-go's csaupgrade, as
// kubectl does when it moves to server-side apply) and applies again.
func (s *Server) apply(ctx context.Context, w Write) (*unstructured.Unstructured, error) {
	obj, err := toObject(w.Rule, w.Hash, w.UID)
	if err != nil {
		return nil, err
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	rules := s.rules.Namespace(w.Rule.Metadata.Namespace)
	live, err := rules.Apply(ctx, w.Rule.Metadata.Name, obj, opts)
	if err != nil {
		return nil, err
	}
	patch, err := csaupgrade.UpgradeManagedFieldsPatch(live, sets.New(FieldManager), FieldManager)
	if err != nil || patch == nil {
		return live, err
	}
	if _, err := rules.Patch(ctx, w.Rule.Metadata.Name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return nil, fmt.Errorf("moving the fields written at creation to server-side apply: %w", err)
	}
	return rules.Apply(ctx, w.Rule.Metadata.Name, obj, opts)
}
