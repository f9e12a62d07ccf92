//go:build integration

package operator_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// This file plays, for the tunnel's Deployments, the parts of a cluster this
// environment does not run (kubelet, the deployment controller, the
// Services' endpoints and kube-proxy), so that the tunnel server and agents
// the operator renders and keeps run as in-process replicas of the real
// tunnel.Server and tunnel.Agent:
//   - mountedSecret is the kubelet's Secret volume: files under ..data,
//     swapped atomically when the Secret changes;
//   - tunnelPool runs replicas of one Deployment and rolls them (one new
//     replica before an old one goes, as maxSurge 1 / maxUnavailable 0);
//   - serviceFront is a Service: it sends each connection to a replica whose
//     Pod matches the Service's own selector (the active tunnel server).

// mountedSecret keeps the keys of a Secret as files in dir, as the kubelet
// does: dir/<key> → ..data/<key>, ..data → a fresh directory per version.
type mountedSecret struct {
	dir     string
	mu      sync.Mutex
	changes []time.Time
	version int
}

// mountSecret writes the Secret once it has data, and keeps it current
// until ctx ends.
func mountSecret(ctx context.Context, t *testing.T, c client.Client, key client.ObjectKey, keys ...string) *mountedSecret {
	t.Helper()
	m := &mountedSecret{dir: t.TempDir()}
	var last [32]byte
	refresh := func() error {
		s := &corev1.Secret{}
		if err := c.Get(ctx, key, s); err != nil {
			return err
		}
		h := sha256.New()
		for _, k := range keys {
			if len(s.Data[k]) == 0 {
				return fmt.Errorf("Secret %s has no %s yet", key, k)
			}
			h.Write(s.Data[k])
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		if sum == last {
			return nil
		}
		if err := m.write(s.Data, keys); err != nil {
			return err
		}
		last = sum
		return nil
	}
	eventually(t, "Secret "+key.String(), refresh)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if err := refresh(); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
				slog.Warn("mounting Secret", "secret", key.String(), "error", err)
			}
		}
	}()
	return m
}

func (m *mountedSecret) write(data map[string][]byte, keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version++
	ts := filepath.Join(m.dir, fmt.Sprintf("..%d", m.version))
	if err := os.Mkdir(ts, 0o755); err != nil {
		return err
	}
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(ts, k), data[k], 0o600); err != nil {
			return err
		}
	}
	tmp := filepath.Join(m.dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "..data")); err != nil {
		return err
	}
	for _, k := range keys {
		link := filepath.Join(m.dir, k)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				return err
			}
		}
	}
	if m.version > 1 {
		_ = os.RemoveAll(filepath.Join(m.dir, fmt.Sprintf("..%d", m.version-1)))
	}
	m.changes = append(m.changes, time.Now())
	return nil
}

// Changes returns when the mounted content changed after the first write.
func (m *mountedSecret) Changes() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.changes[1:]...)
}

func (m *mountedSecret) path(key string) string { return filepath.Join(m.dir, key) }

// replica is one running Pod of a tunnel Deployment.
type replica struct {
	pod      string
	image    string
	stop     func()
	server   *tunnel.Server
	apiAddr  string
	agtAddr  string
	agent    *tunnel.Agent
	serving  *tunnel.KeyPair
	registry *prometheus.Registry
}

// tunnelPool runs the replicas of one Deployment: the tunnel server's in
// the primary or the agents' in a remote.
type tunnelPool struct {
	t         *testing.T
	ctx       context.Context
	c         client.Client // the cluster of the Deployment
	key       client.ObjectKey
	start     func(pod, image string) (*replica, error)
	mu        sync.Mutex
	replicas  []*replica
	generated atomic.Int64
	// rolls counts the replicas replaced by rolling updates.
	rolls atomic.Int64
	// midRoll, when set, runs once per rolling update, after its first new
	// replica is ready and before any old one stops: the moment a reader of
	// the Deployment's status sees it half rolled.
	midRoll func()
}

func (p *tunnelPool) list() []*replica {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*replica(nil), p.replicas...)
}

// add starts a replica with image and creates its Pod.
func (p *tunnelPool) add(image string) (*replica, error) {
	pod := fmt.Sprintf("%s-%d", p.key.Name, p.generated.Add(1))
	podObj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.key.Namespace, Name: pod, Labels: map[string]string{"app": p.key.Name, "app.kubernetes.io/name": p.key.Name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
	// No controller manager here creates the namespace's default service
	// account, which the API server wants for a Pod.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: p.key.Namespace, Name: "default"}}
	if err := p.c.Create(p.ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service account %s/default: %w", p.key.Namespace, err)
	}
	if err := p.c.Create(p.ctx, podObj); err != nil {
		return nil, fmt.Errorf("create pod %s: %w", pod, err)
	}
	r, err := p.start(pod, image)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.replicas = append(p.replicas, r)
	p.mu.Unlock()
	return r, nil
}

// remove stops a replica (gracefully, as on SIGTERM) and deletes its Pod.
func (p *tunnelPool) remove(r *replica) {
	p.mu.Lock()
	p.replicas = slices.DeleteFunc(p.replicas, func(x *replica) bool { return x == r })
	p.mu.Unlock()
	r.stop()
	_ = p.c.Delete(context.WithoutCancel(p.ctx), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.key.Namespace, Name: r.pod}})
}

// deployment is the live Deployment and the image of its first container.
func (p *tunnelPool) deployment() (*appsv1.Deployment, string, error) {
	d := &appsv1.Deployment{}
	if err := p.c.Get(p.ctx, p.key, d); err != nil {
		return nil, "", err
	}
	return d, d.Spec.Template.Spec.Containers[0].Image, nil
}

// reconcile is the deployment controller for the pool: replicas of the
// template's image, a rolling update that starts a new replica (and waits
// for it to be ready) before it stops an old one, standbys first, and the
// Deployment's status.
func (p *tunnelPool) reconcile(ready func(*replica) bool) error {
	d, image, err := p.deployment()
	if err != nil {
		return err
	}
	want := int(*d.Spec.Replicas)
	midRolled := false
	for {
		// The controller observes a new spec at once and reports what runs.
		if err := p.writeStatus(image, ready); err != nil {
			return err
		}
		cur := p.list()
		var old, updated []*replica
		for _, r := range cur {
			if r.image == image {
				updated = append(updated, r)
			} else {
				old = append(old, r)
			}
		}
		if len(updated) == want && len(old) == 0 {
			break
		}
		if len(updated) < want {
			r, err := p.add(image)
			if err != nil {
				return err
			}
			if err := waitFor(p.ctx, 60*time.Second, func() bool { return ready(r) }); err != nil {
				return fmt.Errorf("replica %s of %s never became ready: %w", r.pod, p.key, err)
			}
			if len(old) == 0 {
				continue
			}
			if p.midRoll != nil && !midRolled {
				midRolled = true
				if err := p.writeStatus(image, ready); err != nil {
					return err
				}
				p.midRoll()
			}
		}
		if len(old) > 0 {
			// Standbys (not active servers) first, as unready pods go first.
			sort.SliceStable(old, func(i, j int) bool { return !isActive(old[i]) && isActive(old[j]) })
			p.remove(old[0])
			p.rolls.Add(1)
		}
	}
	return p.writeStatus(image, ready)
}

// writeStatus reports the replicas running now in the Deployment's status,
// as the deployment controller does.
func (p *tunnelPool) writeStatus(image string, ready func(*replica) bool) error {
	d, _, err := p.deployment()
	if err != nil {
		return err
	}
	var st appsv1.DeploymentStatus
	st.ObservedGeneration = d.Generation
	for _, r := range p.list() {
		st.Replicas++
		if r.image == image {
			st.UpdatedReplicas++
		}
		if ready(r) {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
	}
	o := d.Status
	if o.ObservedGeneration == st.ObservedGeneration && o.Replicas == st.Replicas && o.UpdatedReplicas == st.UpdatedReplicas && o.AvailableReplicas == st.AvailableReplicas {
		return nil
	}
	d.Status = st
	return p.c.Status().Update(p.ctx, d)
}

func isActive(r *replica) bool { return r.server != nil && r.server.Active() }

// run keeps the pool reconciled until ctx ends.
func (p *tunnelPool) run(ready func(*replica) bool) {
	for p.ctx.Err() == nil {
		if err := p.reconcile(ready); err != nil && p.ctx.Err() == nil && !apierrors.IsNotFound(err) {
			p.t.Logf("deployment %s: %v", p.key, err)
		}
		select {
		case <-p.ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// stopAll stops every replica.
func (p *tunnelPool) stopAll() {
	for _, r := range p.list() {
		r.stop()
	}
}

func waitFor(ctx context.Context, d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// startServerReplica runs one tunnel server as the rendered Deployment
// describes it: the kept certificate Secret mounted and re-read, tokens
// reviewed by the primary, agents admitted for the RemoteIstios of the
// control plane's namespace, the Lease, and its own Pod labelled with its
// role.
func startServerReplica(ctx context.Context, t *testing.T, primary *rest.Config, c client.Client, pod string) (*replica, error) {
	m := mountSecret(ctx, t, c, client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: render.TunnelServerTLSSecretName}, "tls.crt", "tls.key", "ca.crt")
	serving, err := tunnel.KeyPairFromFiles(m.path("tls.crt"), m.path("tls.key"))
	if err != nil {
		return nil, err
	}
	agentCAs, err := tunnel.CABundleFromFile(m.path("ca.crt"))
	if err != nil {
		return nil, err
	}
	kube := kubernetes.NewForConfigOrDie(primary)
	rctx, cancel := context.WithCancel(ctx)
	reg := prometheus.NewRegistry()
	log := slog.Default().With("component", "tunnel-server", "pod", pod)
	srv, err := tunnel.NewServer(tunnel.ServerOptions{
		ServingCertificate: serving, AgentCAs: agentCAs, TokenReviews: kube.AuthenticationV1().TokenReviews(),
		Clusters: tunnel.RemoteIstioClusters(rctx, dynamic.NewForConfigOrDie(primary), ns, log),
		Lease: &tunnel.LeaseOptions{Client: kube, Namespace: render.TunnelServerNamespace, Name: render.TunnelServerName, Identity: pod,
			PodNamespace: render.TunnelServerNamespace, PodName: pod},
		PingInterval: time.Second, Logger: log, Registerer: reg,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	apiLn, _ := net.Listen("tcp", "127.0.0.1:0")
	agentLn, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan struct{})
	go func() { _ = srv.Serve(rctx, apiLn, agentLn); close(done) }()
	return &replica{pod: pod, server: srv, apiAddr: apiLn.Addr().String(), agtAddr: agentLn.Addr().String(), serving: serving, registry: reg,
		stop: sync.OnceFunc(func() { cancel(); <-done })}, nil
}

// startAgentReplica runs one agent as the agent manifest describes it: its
// Secret mounted and re-read, the tunnel CA from it, forwarding with the
// agent service account's token.
func startAgentReplica(ctx context.Context, t *testing.T, remote *rest.Config, c client.Client, cluster, serverURL, pod string) (*replica, error) {
	m := mountSecret(ctx, t, c, client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: install.AgentSecretName}, "tls.crt", "tls.key", "ca.crt")
	cert, err := tunnel.KeyPairFromFiles(m.path("tls.crt"), m.path("tls.key"))
	if err != nil {
		return nil, err
	}
	cas, err := tunnel.CABundleFromFile(m.path("ca.crt"))
	if err != nil {
		return nil, err
	}
	secs := int64(3600)
	tr, err := kubernetes.NewForConfigOrDie(remote).CoreV1().ServiceAccounts(render.TunnelServerNamespace).CreateToken(ctx, render.TunnelAgentName,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("agent token: %w", err)
	}
	up := rest.AnonymousClientConfig(remote)
	up.BearerToken = tr.Status.Token
	reg := prometheus.NewRegistry()
	a, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: cluster, ID: pod, Servers: []string{serverURL}, Certificate: cert, ServerCAs: cas,
		Upstream: up, BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second, Registerer: reg,
		Logger: slog.Default().With("component", "tunnel-agent", "pod", pod)})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = a.Run(rctx); close(done) }()
	return &replica{pod: pod, agent: a, serving: cert, registry: reg, stop: sync.OnceFunc(func() { cancel(); <-done })}, nil
}

// serviceFront is a Service of the tunnel server with kube-proxy: each new
// connection goes to a running replica whose Pod matches the Service's
// selector; with none, the connection is refused (closed).
type serviceFront struct {
	apiLn, agentLn net.Listener
	pool           *tunnelPool
	selector       atomic.Pointer[labels.Selector]
	matching       atomic.Pointer[[]string]
}

func startFront(ctx context.Context, t *testing.T, pool *tunnelPool) *serviceFront {
	f := &serviceFront{pool: pool}
	f.apiLn, _ = net.Listen("tcp", "127.0.0.1:0")
	f.agentLn, _ = net.Listen("tcp", "127.0.0.1:0")
	none := []string{}
	f.matching.Store(&none)
	go func() { // the endpoints controller
		for ctx.Err() == nil {
			f.refresh(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	go f.serve(ctx, f.apiLn, func(r *replica) string { return r.apiAddr })
	go f.serve(ctx, f.agentLn, func(r *replica) string { return r.agtAddr })
	t.Cleanup(func() { f.apiLn.Close(); f.agentLn.Close() })
	return f
}

func (f *serviceFront) refresh(ctx context.Context) {
	if f.selector.Load() == nil {
		svc := &corev1.Service{}
		if err := f.pool.c.Get(ctx, client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: render.TunnelServiceName}, svc); err != nil {
			return
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		f.selector.Store(&sel)
	}
	pods := &corev1.PodList{}
	if err := f.pool.c.List(ctx, pods, client.InNamespace(render.TunnelServerNamespace), client.MatchingLabelsSelector{Selector: *f.selector.Load()}); err != nil {
		return
	}
	names := []string{}
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	f.matching.Store(&names)
}

func (f *serviceFront) backend(addr func(*replica) string) string {
	names := *f.matching.Load()
	for _, r := range f.pool.list() {
		if slices.Contains(names, r.pod) {
			return addr(r)
		}
	}
	return ""
}

func (f *serviceFront) serve(ctx context.Context, ln net.Listener, addr func(*replica) string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			b := f.backend(addr)
			if b == "" {
				return
			}
			up, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", b)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
			go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// loadedNotAfter is when the certificate a replica would present now
// expires.
func loadedNotAfter(r *replica) time.Time {
	c, err := r.serving.Certificate()
	if err != nil || c == nil || c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}

// tlsOf returns the certificate a TLS peer presents at addr.
func tlsOf(addr string, cfg *tls.Config) (time.Time, error) {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].NotAfter, nil
}
