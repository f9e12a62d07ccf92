//go:build integration

package operator_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

const (
	imageA = "registry.example.com/meshfleet/meshfleet:v1.0.0"
	imageB = "registry.example.com/meshfleet/meshfleet:v1.1.0"
	// renewalWatch is how long traffic flows while certificates of one
	// minute are renewed (every ~20 s: a third of their two-minute span,
	// NotBefore being backdated a minute).
	renewalWatch = 100 * time.Second
)

// TestTunnelLifecycle: the operator runs the tunnel server (its rendered
// Deployment, Service and certificate), `cluster join --tunnel` applies the
// agent in the remote, certificates of one minute are renewed several times
// while a watch and requests flow through the tunnel, and an operator
// upgrade (image A → B) moves the tunnel server and the agents to B through
// rolling updates while the mesh stays Ready.
func TestTunnelLifecycle(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"}, localcluster.ClusterOptions{Name: "remote1"})
	ctx := testenv.Context(t)
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	primaryCfg, remoteCfg := env.Cluster("primary").Config, env.Cluster("remote1").Config
	pc, err := client.New(primaryCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := client.New(remoteCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, pc, crds); err != nil {
		t.Fatal(err)
	}
	create(t, pc, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"istio-system"}}`)
	create(t, pc, `{"apiVersion":"meshfleet.io/v1beta1","kind":"Istio","metadata":{"name":"istio","namespace":"istio-system"},
		"spec":{"version":"1.30.3","clusterName":"primary","multiCluster":{"mode":"flatNetwork"}}}`)
	tunnelCA, _, err := meshca.TunnelCA(ctx, pc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	opToken := filepath.Join(t.TempDir(), "operator-token")
	if err := tunnel.WriteServiceAccountToken(ctx, primaryCfg, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", opToken, time.Hour); err != nil {
		t.Fatal(err)
	}

	// The tunnel server's Deployment and its Service, played by the pool
	// and the front.
	servers := &tunnelPool{t: t, ctx: ctx, c: pc, key: client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: render.TunnelServerName}}
	servers.start = func(pod, image string) (*replica, error) {
		r, err := startServerReplica(ctx, t, primaryCfg, pc, pod)
		if r != nil {
			r.image = image
		}
		return r, err
	}
	t.Cleanup(servers.stopAll)
	// Halfway through a roll of the tunnel server, the Istio resource is
	// reconciled (twice: one may have started before) while the
	// Deployment's status shows it half rolled.
	servers.midRoll = func() {
		before := reconciles()
		if err := waitFor(ctx, 30*time.Second, func() bool { return reconciles() >= before+2 }); err != nil {
			t.Logf("no Istio reconcile halfway through the tunnel server's roll: %v", err)
		}
	}
	front := startFront(ctx, t, servers)
	apiURL := "https://" + front.apiLn.Addr().String()
	agentHost := front.agentLn.Addr().String()
	caPool := x509.NewCertPool()
	caPool.AddCert(tunnelCA.Cert)

	opts := operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: 5 * time.Second, RemoteResync: 5 * time.Second,
		Image: imageA, TunnelServer: &render.TunnelServer{}, TunnelServerHosts: []string{"127.0.0.1"},
		AgentCertTTL: time.Minute, ServerCertTTL: time.Minute,
		Tunnel: &remoteistio.Tunnel{URL: apiURL, CAData: tunnelCA.CertPEM, IstiodTokenFile: render.TunnelTokenPath, TokenFile: opToken}}
	stopOperator := startOperator(t, primaryCfg, opts)
	go rollOutOthers(ctx, pc, rc)
	go servers.run(func(r *replica) bool { _, err := tlsOf(r.apiAddr, &tls.Config{RootCAs: caPool}); return err == nil })

	// What `meshctl cluster join remote1 --tunnel --remote-kubeconfig K`
	// does: the RemoteIstio, then the agent, with the certificate the
	// operator issued, applied in the remote.
	create(t, pc, `{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":"remote1","namespace":"istio-system"},
		"spec":{"pilotAddress":"203.0.113.10"}}`)
	boot := &corev1.Secret{}
	eventually(t, "the agent's bootstrap certificate", func() error {
		return pc.Get(ctx, client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.AgentSecretName("remote1")}, boot)
	})
	agentObjs, err := install.TunnelAgent("remote1", agentHost, imageA, boot.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, rc, agentObjs); err != nil {
		t.Fatal(err)
	}
	agents := &tunnelPool{t: t, ctx: ctx, c: rc, key: client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: render.TunnelAgentName}}
	agents.start = func(pod, image string) (*replica, error) {
		r, err := startAgentReplica(ctx, t, remoteCfg, rc, "remote1", "https://"+agentHost, pod)
		if r != nil {
			r.image = image
		}
		return r, err
	}
	t.Cleanup(agents.stopAll)
	go agents.run(func(r *replica) bool { return r.agent.Status().Connected })

	start := time.Now()
	waitReady(t, pc, "RemoteIstio", &v1beta1.RemoteIstio{}, "remote1", 3*time.Minute)
	waitReady(t, pc, "Istio", &v1beta1.Istio{}, "istio", 3*time.Minute)
	t.Logf("BENCH join through the operator-run tunnel server → RemoteIstio and Istio Ready: %v", time.Since(start).Round(time.Millisecond))
	dep, image, err := servers.deployment()
	if err != nil || image != imageA || *dep.Spec.Replicas != 2 {
		t.Fatalf("tunnel server Deployment: image %q, err %v; want %s with 2 replicas", image, err, imageA)
	}

	tr := startTraffic(ctx, t, apiURL, tunnelCA.CertPEM, opToken, rc)
	t.Run("certificates of one minute renew under traffic", func(t *testing.T) {
		serverSecret := mountSecret(ctx, t, pc, client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: render.TunnelServerTLSSecretName}, "tls.crt")
		agentSecret := mountSecret(ctx, t, rc, client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: install.AgentSecretName}, "tls.crt")
		from := time.Now()
		tr.reset()
		time.Sleep(renewalWatch) // the figures are counted over this span
		r := tr.report(from, append(serverSecret.Changes(), agentSecret.Changes()...))
		t.Logf("BENCH renewal (%v, certificates of 1m): tunnel server certificate renewed %d times, agent certificate %d times; %s",
			renewalWatch, len(serverSecret.Changes()), len(agentSecret.Changes()), r)
		if n := len(serverSecret.Changes()); n < 3 {
			t.Errorf("tunnel server certificate renewed %d times in %v, want at least 3", n, renewalWatch)
		}
		if n := len(agentSecret.Changes()); n < 3 {
			t.Errorf("agent certificate renewed %d times in %v, want at least 3", n, renewalWatch)
		}
		if r.failed > 0 || r.rawFailed > 0 || r.watchRestarts > 0 || r.missed > 0 || r.events == 0 {
			t.Errorf("traffic through the tunnel during renewals: %s; want no failure, no watch restart, no missed event", r)
		}
		// The replicas present what was renewed: the server at the front,
		// each agent for its next session.
		eventually(t, "the tunnel server presenting the renewed certificate", func() error {
			want := leafOf(t, secretData(t, pc, render.TunnelServerNamespace, render.TunnelServerTLSSecretName)["tls.crt"]).NotAfter
			got, err := tlsOf(front.apiLn.Addr().String(), &tls.Config{RootCAs: caPool})
			if err != nil || !got.Equal(want) {
				return fmt.Errorf("presents a certificate valid until %v (%v), the Secret's is valid until %v", got, err, want)
			}
			return nil
		})
		eventually(t, "the agents holding the renewed certificate", func() error {
			want := leafOf(t, secretData(t, rc, render.TunnelServerNamespace, install.AgentSecretName)["tls.crt"]).NotAfter
			for _, a := range agents.list() {
				if got := loadedNotAfter(a); !got.Equal(want) {
					return fmt.Errorf("agent %s holds a certificate valid until %v, the Secret's is valid until %v", a.pod, got, want)
				}
			}
			return nil
		})
	})

	t.Run("an operator upgrade moves the tunnel to the new version and the mesh stays Ready", func(t *testing.T) {
		from := time.Now()
		tr.reset()
		notReady := watchReadiness(ctx, pc)
		stopOperator()
		upgraded := time.Now()
		// Version B, with the production certificate lifetimes: the
		// one-minute ones would keep renewing through the tunnel, which the
		// previous subtest covers.
		opts.Image, opts.AgentCertTTL, opts.ServerCertTTL = imageB, 0, 0
		stopOperator = startOperator(t, primaryCfg, opts)
		eventually(t, "the tunnel server and the agents running "+imageB, func() error {
			for _, p := range []*tunnelPool{servers, agents} {
				d, image, err := p.deployment()
				if err != nil {
					return err
				}
				if image != imageB {
					return fmt.Errorf("Deployment %s has image %s", p.key, image)
				}
				if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedReplicas != 2 {
					return fmt.Errorf("Deployment %s not rolled out: %+v", p.key, d.Status)
				}
				for _, r := range p.list() {
					if r.image != imageB {
						return fmt.Errorf("replica %s still runs %s", r.pod, r.image)
					}
				}
			}
			return nil
		})
		took := time.Since(upgraded)
		time.Sleep(5 * time.Second) // traffic through the new replicas
		r := tr.report(from, nil)
		problems := notReady()
		t.Logf("BENCH operator upgrade %s → %s: tunnel server and agents rolled (%d + %d replicas replaced) in %v; %s; not-Ready observations: %d",
			imageA, imageB, servers.rolls.Load(), agents.rolls.Load(), took.Round(time.Millisecond), r, len(problems))
		if len(problems) > 0 {
			t.Errorf("the mesh left Ready during the upgrade: %s", strings.Join(problems[:min(len(problems), 5)], "; "))
		}
		if r.missed > 0 || r.events == 0 {
			t.Errorf("the watch through the tunnel missed events during the upgrade: %s", r)
		}
		// "No failure beyond one reconnection": no request made through
		// client-go fails (the hand-over of the Lease answers 503 with
		// Retry-After, which it retries), and the open watch is
		// re-established from its last resourceVersion, losing no event, at
		// most once per replaced replica it ran through: the active server,
		// and each agent carrying it — the agents roll one at a time, so a
		// watch moved off the first replaced agent may land on the other
		// old one and move again when that one is replaced (seen in CI
		// under load: 3 with 2 agents).
		if r.failed > 0 {
			t.Errorf("requests through the tunnel failed during the upgrade: %s", r)
		}
		if limit := 1 + int(agents.rolls.Load()); r.watchRestarts > limit {
			t.Errorf("watch re-established %d times, want at most %d (the active server and each replaced agent carrying it)", r.watchRestarts, limit)
		}
		stopOperator()
	})
}

func create(t *testing.T, c client.Client, js string) {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal([]byte(js), &u.Object); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(t.Context(), u); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func secretData(t *testing.T, c client.Client, namespace, name string) map[string][]byte {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s.Data
}

// startOperator runs an operator (framework.StartOperator); the returned
// func stops it and waits.
func startOperator(t *testing.T, cfg *rest.Config, opts operator.Options) func() {
	t.Helper()
	return framework.StartOperator(t, cfg, opts).Stop
}

func waitReady(t *testing.T, c client.Client, kind string, obj client.Object, name string, d time.Duration) {
	t.Helper()
	testenv.Eventually(t, d, kind+" "+name+" to be Ready", func() error {
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			return err
		}
		if conds := conditionsOf(obj); !meta.IsStatusConditionTrue(conds, v1beta1.ConditionReady) {
			return errors.New(formatConditions(conds))
		}
		return nil
	})
}

func conditionsOf(obj client.Object) []metav1.Condition {
	switch o := obj.(type) {
	case *v1beta1.Istio:
		return o.Status.Conditions
	case *v1beta1.RemoteIstio:
		return o.Status.Conditions
	}
	return nil
}

// watchReadiness records every observation (every 100 ms) of the Istio or
// the RemoteIstio not Ready, until the returned func is called.
func watchReadiness(ctx context.Context, c client.Client) func() []string {
	var mu sync.Mutex
	var problems []string
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wctx.Err() == nil {
			for _, o := range []client.Object{&v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio"}}, &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "remote1"}}} {
				if err := c.Get(wctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, o); err != nil {
					continue
				}
				if conds := conditionsOf(o); !meta.IsStatusConditionTrue(conds, v1beta1.ConditionReady) || !meta.IsStatusConditionTrue(conds, v1beta1.ConditionConnected) && o.GetName() == "remote1" {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("%s %s at %s: %s", strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1beta1."), o.GetName(), time.Now().Format("15:04:05.000"), formatConditions(conds)))
					mu.Unlock()
				}
			}
			select {
			case <-wctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return problems
	}
}

// rollOutOthers plays the deployment controller for every Deployment but
// the tunnel's (istiod, gateways), which nothing runs here.
func rollOutOthers(ctx context.Context, clients ...client.Client) {
	for ctx.Err() == nil {
		for _, c := range clients {
			list := &appsv1.DeploymentList{}
			if err := c.List(ctx, list); err != nil {
				continue
			}
			for i := range list.Items {
				d := &list.Items[i]
				if d.Name == render.TunnelServerName || d.Name == render.TunnelAgentName {
					continue
				}
				n := int32(1)
				if d.Spec.Replicas != nil {
					n = *d.Spec.Replicas
				}
				if d.Status.ObservedGeneration == d.Generation && d.Status.AvailableReplicas == n && d.Status.UpdatedReplicas == n {
					continue
				}
				d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
				_ = c.Status().Update(ctx, d)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// traffic is a watch and a request loop through the tunnel to remote1, as
// the operator's service account (allowed by the access policy): a writer
// bumps a counter in a ConfigMap of remote1 (directly) every 200 ms and the
// watch must see every value in order; a request every 100 ms on a new
// connection (a new TLS handshake with the server's current certificate).
type traffic struct {
	mu       sync.Mutex
	requests int
	// failures are what a client-go caller (istiod, the operator) sees:
	// errors after client-go's own retries (503 + Retry-After, a refused
	// or reset connection for a GET).
	failures []time.Time
	failMsgs []string
	// rawFailures are the tunnel's first answers that were not 200, on
	// the request loop that does not retry.
	rawRequests   int
	rawFailures   []time.Time
	rawMsgs       []string
	latencies     []reqTiming
	events        int
	missed        int
	watchRestarts []time.Time
}

type reqTiming struct {
	start time.Time
	dur   time.Duration
}

type trafficReport struct {
	requests, failed, events, missed, watchRestarts int
	rawRequests, rawFailed                          int
	rawFirst                                        string
	maxLatency, maxLatencyRenewing                  time.Duration
	failedSpan                                      time.Duration
	firstFailure                                    string
}

func (r trafficReport) String() string {
	s := fmt.Sprintf("client-go: %d requests, %d failed, max latency %v (%v within 2 s of a renewal); watch: %d events, %d missed, %d re-established; without retries: %d requests, %d not 200",
		r.requests, r.failed, r.maxLatency.Round(time.Millisecond), r.maxLatencyRenewing.Round(time.Millisecond), r.events, r.missed, r.watchRestarts, r.rawRequests, r.rawFailed)
	if r.failed > 0 {
		s += fmt.Sprintf("; client-go failures over %v (first: %s)", r.failedSpan.Round(time.Millisecond), r.firstFailure)
	}
	if r.rawFailed > 0 {
		s += fmt.Sprintf(" (first answer not 200: %s)", r.rawFirst)
	}
	return s
}

func (tr *traffic) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.requests, tr.failures, tr.failMsgs, tr.latencies, tr.events, tr.missed, tr.watchRestarts = 0, nil, nil, nil, 0, 0, nil
	tr.rawRequests, tr.rawFailures, tr.rawMsgs = 0, nil, nil
}

func (tr *traffic) report(since time.Time, renewals []time.Time) trafficReport {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r := trafficReport{requests: tr.requests, failed: len(tr.failures), events: tr.events, missed: tr.missed, watchRestarts: len(tr.watchRestarts),
		rawRequests: tr.rawRequests, rawFailed: len(tr.rawFailures)}
	if len(tr.rawMsgs) > 0 {
		r.rawFirst = tr.rawMsgs[0]
	}
	for _, l := range tr.latencies {
		r.maxLatency = max(r.maxLatency, l.dur)
		if slices.ContainsFunc(renewals, func(at time.Time) bool {
			return !at.Before(l.start.Add(-2*time.Second)) && !at.After(l.start.Add(l.dur+2*time.Second))
		}) {
			r.maxLatencyRenewing = max(r.maxLatencyRenewing, l.dur)
		}
	}
	if len(tr.failures) > 0 {
		r.failedSpan = tr.failures[len(tr.failures)-1].Sub(tr.failures[0])
		r.firstFailure = tr.failMsgs[0]
	}
	return r
}

func (tr *traffic) fail(at time.Time, msg string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.failures = append(tr.failures, at)
	tr.failMsgs = append(tr.failMsgs, msg)
}

func startTraffic(ctx context.Context, t *testing.T, apiURL string, caPEM []byte, tokenFile string, remoteAdmin client.Client) *traffic {
	tr := &traffic{}
	cfg := &rest.Config{Host: apiURL + "/clusters/remote1", BearerTokenFile: tokenFile, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "tick"}, Data: map[string]string{"n": "0"}}
	if err := remoteAdmin.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := remoteAdmin.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
		t.Fatal(err)
	}
	// The writer.
	go func() {
		n, _ := strconv.Atoi(cm.Data["n"])
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			cur := &corev1.ConfigMap{}
			if err := remoteAdmin.Get(ctx, client.ObjectKeyFromObject(cm), cur); err != nil {
				continue
			}
			n++
			cur.Data = map[string]string{"n": strconv.Itoa(n)}
			if err := remoteAdmin.Update(ctx, cur); err != nil {
				n--
			}
		}
	}()
	// The watch, re-established from its last resourceVersion if it ends.
	go func() {
		rv := cm.ResourceVersion
		last, _ := strconv.Atoi(cm.Data["n"])
		first := true
		for ctx.Err() == nil {
			w, err := kube.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=tick", ResourceVersion: rv})
			if err != nil {
				if ctx.Err() == nil {
					tr.fail(time.Now(), "watch: "+err.Error())
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if !first {
				tr.mu.Lock()
				tr.watchRestarts = append(tr.watchRestarts, time.Now())
				tr.mu.Unlock()
			}
			first = false
			for ev := range w.ResultChan() {
				c, ok := ev.Object.(*corev1.ConfigMap)
				if !ok || ev.Type != watch.Modified {
					continue
				}
				n, _ := strconv.Atoi(c.Data["n"])
				tr.mu.Lock()
				tr.events++
				if n > last+1 {
					tr.missed += n - last - 1
				}
				tr.mu.Unlock()
				last, rv = n, c.ResourceVersion
			}
		}
	}()
	// The requests, each on a new connection (a TLS handshake with the
	// server's current certificate): through client-go, as istiod and the
	// operator make them, and raw, to see the tunnel's first answers.
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fresh := &rest.Config{Host: cfg.Host, BearerTokenFile: tokenFile, Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
	freshKube, err := kubernetes.NewForConfig(fresh)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil {
			start := time.Now()
			_, err := freshKube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
			dur := time.Since(start)
			if ctx.Err() != nil {
				return
			}
			tr.mu.Lock()
			tr.requests++
			tr.latencies = append(tr.latencies, reqTiming{start, dur})
			tr.mu.Unlock()
			if err != nil {
				tr.fail(start, "get: "+err.Error())
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
	go func() {
		for ctx.Err() == nil {
			tok, _ := os.ReadFile(tokenFile)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/api/v1/namespaces/kube-system", nil)
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
			resp, err := hc.Do(req)
			if ctx.Err() != nil {
				return
			}
			msg := ""
			switch {
			case err != nil:
				msg = err.Error()
			case resp.StatusCode != http.StatusOK:
				msg = resp.Status
			}
			if resp != nil {
				resp.Body.Close()
			}
			tr.mu.Lock()
			tr.rawRequests++
			if msg != "" {
				tr.rawFailures = append(tr.rawFailures, time.Now())
				tr.rawMsgs = append(tr.rawMsgs, msg)
			}
			tr.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return tr
}
