package members

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

var (
	istiosGVR       = v1beta1.GroupVersion.WithResource("istios")
	remoteIstiosGVR = v1beta1.GroupVersion.WithResource("remoteistios")
)

// Watcher keeps the Mesh current from informers on the namespace's Istio
// and RemoteIstio resources and Secrets in the primary.
type Watcher struct {
	primary  *rest.Config
	opts     Options
	log      *slog.Logger
	onChange func(*Mesh)

	istios, remotes, secrets cache.SharedIndexInformer
	dyn                      dynamicinformer.DynamicSharedInformerFactory
	kube                     informers.SharedInformerFactory
	kick                     chan struct{}

	mu      sync.Mutex
	current *Mesh
	err     error
}

// NewWatcher returns a Watcher over the mesh in the primary cluster.
// onChange is called, from one goroutine, with each Mesh that differs from
// the last one (Mesh.Key); it may block.
func NewWatcher(primary *rest.Config, opts Options, log *slog.Logger, onChange func(*Mesh)) (*Watcher, error) {
	if log == nil {
		log = slog.Default()
	}
	if onChange == nil {
		onChange = func(*Mesh) {}
	}
	ns := opts.namespace()
	dc, err := dynamic.NewForConfig(primary)
	if err != nil {
		return nil, fmt.Errorf("members: dynamic client for the primary: %w", err)
	}
	kc, err := kubernetes.NewForConfig(primary)
	if err != nil {
		return nil, fmt.Errorf("members: client for the primary: %w", err)
	}
	w := &Watcher{primary: primary, opts: opts, log: log, onChange: onChange, kick: make(chan struct{}, 1)}
	w.dyn = dynamicinformer.NewFilteredDynamicSharedInformerFactory(dc, 0, ns, nil)
	w.kube = informers.NewSharedInformerFactoryWithOptions(kc, 0, informers.WithNamespace(ns))
	w.istios = w.dyn.ForResource(istiosGVR).Informer()
	w.remotes = w.dyn.ForResource(remoteIstiosGVR).Informer()
	w.secrets = w.kube.Core().V1().Secrets().Informer()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.trigger() },
		UpdateFunc: func(any, any) { w.trigger() },
		DeleteFunc: func(any) { w.trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{w.istios, w.remotes, w.secrets} {
		_, _ = inf.AddEventHandler(h)
	}
	return w, nil
}

func (w *Watcher) trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Start starts the informers and the loop that recomputes the Mesh; they
// run until ctx ends.
func (w *Watcher) Start(ctx context.Context) {
	w.dyn.Start(ctx.Done())
	w.kube.Start(ctx.Done())
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), w.istios.HasSynced, w.remotes.HasSynced, w.secrets.HasSynced) {
			return
		}
		for {
			w.recompute()
			select {
			case <-ctx.Done():
				return
			case <-w.kick:
				// Let a burst (RemoteIstio and its Secret created together) settle.
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}()
}

// Current waits until the first Mesh is known (or ctx ends) and returns it,
// or the reason no Istio resource could be chosen.
func (w *Watcher) Current(ctx context.Context) (*Mesh, error) {
	for {
		w.mu.Lock()
		m, err := w.current, w.err
		w.mu.Unlock()
		if m != nil {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("members: reading the Istio and RemoteIstio resources of the primary (%s): %w; check that meshfleet's CRDs are installed and the kubeconfig may list them and the namespace's Secrets", w.primary.Host, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *Watcher) recompute() {
	var istios []v1beta1.Istio
	for _, o := range w.istios.GetStore().List() {
		var ist v1beta1.Istio
		if err := fromUnstructured(o, &ist); err != nil {
			w.log.Warn("ignoring an Istio resource that does not decode", "err", err)
			continue
		}
		istios = append(istios, ist)
	}
	var remotes []v1beta1.RemoteIstio
	for _, o := range w.remotes.GetStore().List() {
		var ri v1beta1.RemoteIstio
		if err := fromUnstructured(o, &ri); err != nil {
			w.log.Warn("ignoring a RemoteIstio resource that does not decode", "err", err)
			continue
		}
		remotes = append(remotes, ri)
	}
	secrets := map[string]*corev1.Secret{}
	for _, o := range w.secrets.GetStore().List() {
		if s, ok := o.(*corev1.Secret); ok {
			secrets[s.Name] = s
		}
	}
	m, err := Resolve(w.primary, istios, remotes, secrets, w.opts)
	w.mu.Lock()
	prev, prevErr := w.current, w.err
	w.current, w.err = m, err
	w.mu.Unlock()
	switch {
	case err != nil:
		if prevErr == nil || prevErr.Error() != err.Error() {
			w.log.Error("no mesh to serve; keeping the last member clusters", "err", err)
		}
		if prev != nil {
			w.mu.Lock()
			w.current = prev // keep serving the last known members
			w.mu.Unlock()
		}
		return
	case prev != nil && prev.Key() == m.Key() && fmt.Sprint(prev.Problems) == fmt.Sprint(m.Problems):
		return
	}
	for _, p := range m.Problems {
		w.log.Warn("member cluster left out", "problem", p)
	}
	names := make([]string, 0, len(m.Members))
	for _, mb := range m.Members {
		names = append(names, mb.Name+"("+mb.Connection+")")
	}
	w.log.Info("mesh members", "istio", m.Istio, "members", names, "failover", m.Failover)
	if prev == nil || prev.Key() != m.Key() {
		w.onChange(m)
	}
}

func fromUnstructured(o any, into any) error {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("unexpected object %T", o)
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}
