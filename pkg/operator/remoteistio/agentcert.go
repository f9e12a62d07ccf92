package remoteistio

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// tunnelled reports whether ri's cluster is reached through the tunnel.
func (r *Reconciler) tunnelled(ri *v1beta1.RemoteIstio) bool {
	return ri.Spec.KubeconfigSecretRef == nil && r.Tunnel != nil && r.Tunnel.URL != ""
}

// agentBootstrap keeps the agent certificate of a tunnelled cluster in the
// primary (Namespace/AgentSecretName), issued from the tunnel CA, for
// `meshctl cluster join --tunnel` to print: the joining admin needs no CA
// key. It returns when that certificate is due for renewal.
func (r *Reconciler) agentBootstrap(ctx context.Context, cp *render.ControlPlane) (time.Time, conditions.Outcome) {
	key := client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.AgentSecretName(cp.ClusterName)}
	live := &corev1.Secret{}
	if err := r.Client.Get(ctx, key, live); err != nil && !apierrors.IsNotFound(err) {
		return time.Time{}, conditions.Transient(v1beta1.ReasonCAError, fmt.Sprintf("reading Secret %s: %v", key, err), err)
	}
	cert, out := r.agentCert(ctx, live.Data, cp.ClusterName)
	if !out.Done {
		return time.Time{}, out
	}
	if err := r.writeAgentSecret(ctx, r.Client, key, render.OwnerLabels(cp.Owner), cert); err != nil {
		return time.Time{}, conditions.Transient(v1beta1.ReasonApplyFailed, err.Error(), err)
	}
	return cert.RenewAt, conditions.Succeeded("")
}

// renewAgent renews the agent's own certificate in its cluster, through the
// tunnel that agent holds, before it expires; the agent reloads it. It
// returns the certificate now in place.
func (r *Reconciler) renewAgent(ctx context.Context, cp *render.ControlPlane, rem *remote) (*meshca.LeafCert, conditions.Outcome) {
	key := client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.AgentTLSSecretName}
	live := &corev1.Secret{}
	if err := rem.client.Get(ctx, key, live); err != nil && !apierrors.IsNotFound(err) {
		return nil, remoteFailed(v1beta1.ReasonCAError, cp.ClusterName, fmt.Sprintf("reading the agent's Secret %s", key), err)
	}
	cert, out := r.agentCert(ctx, live.Data, cp.ClusterName)
	if !out.Done {
		return nil, out
	}
	if cert.Reissued != "" {
		if err := ensureNamespace(ctx, rem, meshca.Namespace); err != nil {
			return nil, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "creating its namespace", err)
		}
	}
	// Not owner-labelled: the agent's Secret belongs to the agent's
	// manifest, and leaving must not cut the tunnel it leaves through.
	labels := map[string]string{render.LabelManagedBy: render.ManagedByValue}
	if err := r.writeAgentSecret(ctx, rem.client, key, labels, cert); err != nil {
		return nil, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "renewing the agent's certificate", err)
	}
	meshca.RecordExpiry(cp.ClusterName, "tunnel-agent", cert.NotAfter)
	return cert, conditions.Succeeded("")
}

// agentCert keeps or reissues the agent certificate in live.
func (r *Reconciler) agentCert(ctx context.Context, live map[string][]byte, cluster string) (*meshca.LeafCert, conditions.Outcome) {
	now := r.now()
	tunnelCA, _, err := meshca.TunnelCA(ctx, r.Client, now)
	if err != nil {
		return nil, caOutcome(err)
	}
	ttl := r.AgentCertTTL
	if ttl == 0 {
		ttl = meshca.AgentCertTTL
	}
	cert, err := meshca.AgentCertificate(live, tunnelCA, cluster, ttl, now)
	if err != nil {
		return nil, conditions.Failed(v1beta1.ReasonCAError, err.Error())
	}
	return cert, conditions.Succeeded("")
}

// writeAgentSecret applies cert at key when it was reissued.
func (r *Reconciler) writeAgentSecret(ctx context.Context, c client.Client, key client.ObjectKey, labels map[string]string, cert *meshca.LeafCert) error {
	if cert.Reissued == "" {
		return nil
	}
	s, err := meshca.TLSSecret(key.Namespace, key.Name, labels, cert.Data)
	if err != nil {
		return err
	}
	a := &apply.Applier{Client: c, FieldManager: apply.OperatorFieldManager}
	if _, err := a.Apply(ctx, []*unstructured.Unstructured{s}); err != nil {
		return fmt.Errorf("writing the agent certificate %s (%s): %w", key, cert.Reissued, err)
	}
	return nil
}
