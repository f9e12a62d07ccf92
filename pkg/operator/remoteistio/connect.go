package remoteistio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/kubeconfig"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// Tunnel is how the operator reaches tunnelled clusters: through the tunnel
// server, authenticating with its own credentials to the primary.
type Tunnel struct {
	// URL of the tunnel server; cluster C is served at URL/clusters/C.
	URL string
	// CAData verifies the tunnel server's certificate.
	CAData []byte
	// IstiodTokenFile is where istiod reads its own service-account token,
	// written into the remote secrets of tunnelled clusters.
	IstiodTokenFile string
	// TokenFile, when set, holds the operator's own token for the tunnel's
	// audience (a projected service-account token), presented instead of
	// its credentials for the primary.
	TokenFile string
}

// remote is a connected remote cluster.
type remote struct {
	client     client.Client
	config     *rest.Config
	connection string
	version    string
	uid        string
}

// connect reaches the remote API server, through the kubeconfig Secret when
// the spec names one, else through the tunnel. It checks the server answers,
// that the operator may read it, and that it is the cluster first seen.
// Every request of the client it returns ends when ctx does (boundTo).
func (r *Reconciler) connect(ctx context.Context, ri *v1beta1.RemoteIstio, clusterName string) (*remote, conditions.Outcome) {
	cfg, connection, out := r.restConfig(ctx, ri, clusterName)
	if !out.Done {
		return nil, out
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 15 * time.Second
	if cfg.QPS == 0 && cfg.Burst == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return boundTo{ctx: ctx, next: rt} })
	var dc *discovery.DiscoveryClient
	hc, err := rest.HTTPClientFor(cfg)
	if err == nil {
		dc, err = discovery.NewDiscoveryClientForConfigAndClient(cfg, hc)
	}
	if err != nil {
		return nil, conditions.Failed(v1beta1.ReasonBadKubeconfig, fmt.Sprintf("cannot use the connection to cluster %s: %v", clusterName, err))
	}
	info, err := dc.ServerVersionWithContext(ctx)
	if err != nil {
		return nil, classify(err, clusterName, cfg.Host, connection)
	}
	c, err := client.New(cfg, client.Options{Scheme: r.Scheme, HTTPClient: hc})
	if err != nil {
		return nil, conditions.Transient(v1beta1.ReasonUnreachable, fmt.Sprintf("client for cluster %s: %v", clusterName, err), err)
	}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: "kube-system"}, ns); err != nil {
		return nil, classify(err, clusterName, cfg.Host, connection)
	}
	uid := string(ns.UID)
	if ri.Status.ClusterUID != "" && ri.Status.ClusterUID != uid {
		return nil, conditions.Failed(v1beta1.ReasonWrongCluster, fmt.Sprintf(
			"%s now reaches a different cluster (kube-system UID %s) than the one joined as %s (UID %s); point the connection back at that cluster, or delete and re-create the RemoteIstio to join the new one",
			cfg.Host, uid, clusterName, ri.Status.ClusterUID))
	}
	return &remote{client: c, config: cfg, connection: connection, version: info.GitVersion, uid: uid},
		conditions.Succeeded(fmt.Sprintf("%s connection to %s (Kubernetes %s)", connection, cfg.Host, info.GitVersion))
}

// restConfig builds the connection from the kubeconfig Secret or the tunnel.
func (r *Reconciler) restConfig(ctx context.Context, ri *v1beta1.RemoteIstio, clusterName string) (*rest.Config, string, conditions.Outcome) {
	if ref := ri.Spec.KubeconfigSecretRef; ref != nil {
		s := &corev1.Secret{}
		key := client.ObjectKey{Namespace: ri.Namespace, Name: ref.Name}
		if err := r.APIReader.Get(ctx, key, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, "", conditions.Waiting(v1beta1.ReasonBadKubeconfig, fmt.Sprintf(
					"spec.kubeconfigSecretRef: Secret %s not found; create it with the remote cluster's kubeconfig under the key %q (kubectl -n %s create secret generic %s --from-file=%s=remote.kubeconfig)",
					key, v1beta1.KubeconfigSecretKey, key.Namespace, key.Name, v1beta1.KubeconfigSecretKey), 30*time.Second)
			}
			return nil, "", conditions.Transient(v1beta1.ReasonUnreachable, fmt.Sprintf("reading Secret %s: %v", key, err), err)
		}
		data, ok := s.Data[v1beta1.KubeconfigSecretKey]
		if !ok {
			return nil, "", conditions.Waiting(v1beta1.ReasonBadKubeconfig, fmt.Sprintf(
				"spec.kubeconfigSecretRef: Secret %s has no key %q (it has %s); put the remote cluster's kubeconfig under %q",
				key, v1beta1.KubeconfigSecretKey, keysOf(s.Data), v1beta1.KubeconfigSecretKey), 30*time.Second)
		}
		// Only inline credentials: whoever may write this Secret must not make
		// the operator run a program, read its own files or skip TLS.
		cfg, errs := kubeconfig.Inline(data)
		if len(errs) > 0 {
			return nil, "", conditions.Waiting(v1beta1.ReasonBadKubeconfig, fmt.Sprintf(
				"spec.kubeconfigSecretRef: the kubeconfig in Secret %s, key %q, is refused (nothing was run or sent): %v",
				key, v1beta1.KubeconfigSecretKey, errs.ToAggregate()), 30*time.Second)
		}
		return cfg, v1beta1.ConnectionDirect, conditions.Succeeded("")
	}
	if r.Tunnel == nil || r.Tunnel.URL == "" {
		return nil, "", conditions.Failed(v1beta1.ReasonBadKubeconfig,
			"spec.kubeconfigSecretRef is not set and the operator runs without a tunnel (no tunnel URL configured); name a Secret with the remote cluster's kubeconfig, or install the tunnel")
	}
	cfg := tunnel.ClientConfig(r.PrimaryConfig, r.Tunnel.URL, r.Tunnel.CAData, r.Tunnel.TokenFile, clusterName)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return retryUnsent{next: rt, window: unsentRetryWindow} })
	return cfg, v1beta1.ConnectionTunnel, conditions.Succeeded("")
}

// unauthorizedRecheck is how long the operator waits before it tries a
// cluster again that refused it (401/403).
const unauthorizedRecheck = 30 * time.Second

// classify turns a failed first request into a condition that says what to do.
func classify(err error, cluster, host, connection string) conditions.Outcome {
	switch {
	// The fix for a 401 or 403 lies in the remote cluster (its RBAC, its
	// credentials), which the operator does not watch, and a restarting
	// API server answers 403 until it has loaded RBAC: look again after
	// unauthorizedRecheck instead of waiting for the spec to change.
	case apierrors.IsUnauthorized(err):
		return conditions.Waiting(v1beta1.ReasonUnauthorized, fmt.Sprintf(
			"cluster %s (%s) rejected the operator's credentials (401); give the kubeconfig valid credentials%s", cluster, host, tunnelHint(connection)), unauthorizedRecheck)
	case apierrors.IsForbidden(err):
		return conditions.Waiting(v1beta1.ReasonUnauthorized, fmt.Sprintf(
			"cluster %s (%s) forbids the operator to read it: %v; bind the kubeconfig's user to cluster-admin in that cluster", cluster, host, err), unauthorizedRecheck)
	case apierrors.IsServiceUnavailable(err) && connection == v1beta1.ConnectionTunnel:
		return conditions.Waiting(v1beta1.ReasonUnreachable, fmt.Sprintf(
			"no tunnel agent of cluster %s is connected to %s; install the agent in that cluster (manifests/tunnel/agent.yaml) and check its logs", cluster, host), 10*time.Second)
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) {
		return conditions.Waiting(v1beta1.ReasonUnreachable, fmt.Sprintf(
			"cannot reach the API server of cluster %s at %s: %v; check the address and the network path%s", cluster, host, err, tunnelHint(connection)), 10*time.Second)
	}
	return conditions.Waiting(v1beta1.ReasonUnreachable, fmt.Sprintf("cluster %s (%s): %v", cluster, host, err), 10*time.Second)
}

// remoteFailed is the outcome of a failed request to the remote cluster of
// step (a write, or a read it needs). A failure that says the cluster or its
// storage cannot be reached right now (no connection, a timeout, 500/503/504,
// 429) is an outage: Unreachable, which keeps the other conditions at their
// last known status. Anything else is reason, retried with backoff.
func remoteFailed(reason, cluster, what string, err error) conditions.Outcome {
	if outage(err) {
		return conditions.Waiting(v1beta1.ReasonUnreachable, fmt.Sprintf(
			"cluster %s stopped answering while %s: %v; its API server or its storage (etcd) is down or overloaded, or the network path to it (the tunnel and its agent, if it is reached through one) is broken; meshfleet retries every 10s",
			cluster, what, err), 10*time.Second)
	}
	return conditions.Transient(reason, fmt.Sprintf("cluster %s: %s: %v", cluster, what, err), err)
}

// outage reports whether err says the remote cannot serve requests now,
// rather than that this request is wrong.
func outage(err error) bool {
	if err == nil {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		// A webhook of the remote that fails is that webhook's problem, not
		// the cluster's; any 4xx answer is about the request.
		if strings.Contains(status.Status().Message, "failed calling webhook") {
			return false
		}
		return status.Status().Code >= 500 || apierrors.IsTooManyRequests(err)
	}
	var netErr net.Error
	var urlErr *url.Error
	return errors.As(err, &netErr) || errors.As(err, &urlErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

func tunnelHint(connection string) string {
	if connection == v1beta1.ConnectionTunnel {
		return " (through the tunnel: check the agent's logs and the tunnel server's)"
	}
	return ""
}

func keysOf(m map[string][]byte) string {
	if len(m) == 0 {
		return "no keys"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return strings.Join(ks, ", ")
}
