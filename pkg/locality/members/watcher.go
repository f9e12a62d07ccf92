package members

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

var (
	istiosGVR       = v1beta1.GroupVersion.WithResource("istios")
	remoteIstiosGVR = v1beta1.GroupVersion.WithResource("remoteistios")
)

// SecretPoll is how often the kubeconfig Secrets the RemoteIstios name are
// read again (a Secret created late or rotated is seen within it).
const SecretPoll = 10 * time.Second

// Watcher keeps the Mesh current from informers on the namespace's Istio
// and RemoteIstio resources in the primary, and the kubeconfig Secrets they
// name, read one by one (Get, not list or watch, so that the locality
// server may read those Secrets only, by name, and no other Secret of the
// namespace).
type Watcher struct {
	primary  *rest.Config
	opts     Options
	log      *slog.Logger
	onChange func(*Mesh)

	istios, remotes cache.SharedIndexInformer
	dyn             dynamicinformer.DynamicSharedInformerFactory
	secretsAPI      corev1client.SecretInterface
	kick            chan struct{}
	// secrets are the last kubeconfig Secrets read, by name; a Secret that
	// cannot be read for a moment (not "not found") keeps its last copy.
	secrets map[string]*corev1.Secret

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
	w.secretsAPI = kc.CoreV1().Secrets(ns)
	w.secrets = map[string]*corev1.Secret{}
	w.istios = w.dyn.ForResource(istiosGVR).Informer()
	w.remotes = w.dyn.ForResource(remoteIstiosGVR).Informer()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.trigger() },
		UpdateFunc: func(any, any) { w.trigger() },
		DeleteFunc: func(any) { w.trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{w.istios, w.remotes} {
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
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), w.istios.HasSynced, w.remotes.HasSynced) {
			return
		}
		poll := time.NewTicker(SecretPoll)
		defer poll.Stop()
		for {
			w.recompute(ctx)
			select {
			case <-ctx.Done():
				return
			case <-poll.C:
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

func (w *Watcher) recompute(ctx context.Context) {
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
	secrets := w.readSecrets(ctx, remotes)
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

// readSecrets reads the kubeconfig Secrets the remotes in the namespace
// name. A Secret not found is absent (Resolve says so); one that cannot be
// read for another reason keeps its last copy, so a blip of the primary's
// API does not drop a member.
func (w *Watcher) readSecrets(ctx context.Context, remotes []v1beta1.RemoteIstio) map[string]*corev1.Secret {
	out := map[string]*corev1.Secret{}
	for _, ri := range remotes {
		ref := ri.Spec.KubeconfigSecretRef
		if ref == nil || (ri.Namespace != "" && ri.Namespace != w.opts.namespace()) {
			continue
		}
		if _, done := out[ref.Name]; done {
			continue
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := w.secretsAPI.Get(gctx, ref.Name, metav1.GetOptions{})
		cancel()
		switch {
		case err == nil:
			out[ref.Name] = s
		case apierrors.IsNotFound(err):
		default:
			w.log.Warn("cannot read a RemoteIstio's kubeconfig Secret; keeping its last copy", "secret", w.opts.namespace()+"/"+ref.Name, "err", err)
			if last := w.secrets[ref.Name]; last != nil {
				out[ref.Name] = last
			}
		}
	}
	w.secrets = out
	return out
}
