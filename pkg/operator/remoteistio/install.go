package remoteistio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/rollout"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// Token lifetimes of the istio-reader service account in remote secrets.
const (
	readerTokenTTL   = 24 * time.Hour
	readerTokenRenew = 8 * time.Hour
	// annotationTokenExpiry records when the token in a remote secret expires.
	annotationTokenExpiry = "meshfleet.io/token-expires"
	// annotationTokenAccount records the UID of the remote service account
	// the token was issued for: a token outlives nothing of its account, so
	// an account deleted and created again (a revocation) needs a new one.
	annotationTokenAccount = "meshfleet.io/token-account-uid"
)

// certificates issues the remote's intermediate CA from the primary's root
// and writes it into the remote cluster as cacerts.
func (r *Reconciler) certificates(ctx context.Context, primary, cp *render.ControlPlane, rem *remote) (*meshca.Issued, conditions.Outcome) {
	now := r.now()
	if primary.CA.External != nil {
		return r.externalCertificates(ctx, cp, rem)
	}
	root, _, err := meshca.Root(ctx, r.Client, r.APIReader, primary, now)
	if err != nil {
		return nil, caOutcome(err)
	}
	// The remote's namespace first: cacerts lives in it.
	if err := ensureNamespace(ctx, rem, cp.Namespace); err != nil {
		return nil, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "creating its namespace", err)
	}
	certs, err := meshca.CACerts(ctx, rem.client, cp, root, now)
	if err != nil {
		if outage(err) {
			return nil, remoteFailed(v1beta1.ReasonCAError, cp.ClusterName, "reading cacerts", err)
		}
		return nil, caOutcome(err)
	}
	a := &apply.Applier{Client: rem.client, FieldManager: apply.OperatorFieldManager, OwnerUID: cp.Owner.UID}
	if _, err := a.Apply(ctx, []*unstructured.Unstructured{certs.Secret}); err != nil {
		if out, ok := conflictOutcome(err, cp.ClusterName); ok {
			return nil, out
		}
		return nil, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "writing cacerts", err)
	}
	return certs, conditions.Succeeded(fmt.Sprintf("intermediate CA for cluster %s, signed by the mesh root, valid until %s",
		cp.ClusterName, certs.NotAfter.UTC().Format(time.RFC3339)))
}

// externalCertificates checks the cacerts the user put in the remote
// (spec.security.externalCA on the primary's Istio): the operator writes
// none. The namespace is created first, so that the user has somewhere to
// put it.
func (r *Reconciler) externalCertificates(ctx context.Context, cp *render.ControlPlane, rem *remote) (*meshca.Issued, conditions.Outcome) {
	if err := ensureNamespace(ctx, rem, cp.Namespace); err != nil {
		return nil, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "creating its namespace", err)
	}
	certs, err := meshca.ExternalCACerts(ctx, rem.client, cp, r.now())
	if err != nil {
		if outage(err) {
			return nil, remoteFailed(v1beta1.ReasonCAError, cp.ClusterName, "reading cacerts", err)
		}
		return nil, caOutcome(err)
	}
	msg := fmt.Sprintf("cluster %s's own intermediate CA (Secret %s/%s, signed outside the cluster) chains to the external root %q, valid until %s",
		cp.ClusterName, cp.Namespace, meshca.CACertsSecretName, certs.External.Root.Subject.CommonName, certs.NotAfter.UTC().Format(time.RFC3339))
	for _, w := range certs.External.Warnings {
		msg += "; warning: " + w
	}
	return certs, conditions.Succeeded(msg)
}

// conflictOutcome is the outcome of an apply that met objects it did not
// create (in cluster), which waits for the user and is looked at again.
func conflictOutcome(err error, cluster string) (conditions.Outcome, bool) {
	var c *apply.ConflictError
	if !errors.As(err, &c) {
		return conditions.Outcome{}, false
	}
	return conditions.Waiting(v1beta1.ReasonNotOwned, fmt.Sprintf("cluster %s: %v", cluster, c), 30*time.Second), true
}

func caOutcome(err error) conditions.Outcome {
	var e *meshca.Error
	if errors.As(err, &e) && e.Transient {
		return conditions.Transient(v1beta1.ReasonCAError, e.Message, e)
	}
	reason := v1beta1.ReasonCAError
	if e != nil && e.Reason != "" {
		reason = e.Reason
	}
	return conditions.Waiting(reason, err.Error(), 30*time.Second)
}

// install applies the remote pieces in the remote cluster and the remote
// secret in the primary. It returns when the remote secret's token must be
// renewed.
func (r *Reconciler) install(ctx context.Context, ri *v1beta1.RemoteIstio, cp *render.ControlPlane, rem *remote, certs *meshca.Issued) (*render.Manifest, time.Time, conditions.Outcome) {
	if cp.Remote.PilotAddress == "" {
		addr, err := r.eastWestAddress(ctx, render.GatewayNamespace)
		if err != nil {
			return nil, time.Time{}, conditions.Transient(v1beta1.ReasonApplyFailed, err.Error(), err)
		}
		cp.Remote.PilotAddress = addr
	}
	var m *render.Manifest
	var err error
	if len(cp.Remote.Revisions) > 0 {
		m, err = render.RenderRevisions(cp, cp.Remote.Revisions)
	} else {
		m, err = render.Render(cp)
	}
	if err != nil {
		return nil, time.Time{}, conditions.Failed(v1beta1.ReasonInvalidSpec, fmt.Sprintf("rendering the remote pieces failed: %v; this is a meshfleet bug", err))
	}
	for _, c := range consumers(cp) {
		// Through the tunnel istiod (and Kiali) read the remote as themselves, impersonated.
		m.Objects = append(m.Objects, c.RemoteRBAC(cp, rem.connection == v1beta1.ConnectionTunnel)...)
	}

	if _, ok := m.NamespaceLabels[cp.Namespace]; !ok {
		m.NamespaceLabels[cp.Namespace] = nil
	}
	nsApplier := &apply.Applier{Client: rem.client, FieldManager: apply.NamespaceLabelsManager}
	if err := nsApplier.LabelNamespaces(ctx, m.NamespaceLabels); err != nil {
		return nil, time.Time{}, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "applying namespace labels", err)
	}
	// Istio's CRDs are shared (applied without an owner, never deleted).
	crds := &apply.Applier{Client: rem.client, FieldManager: apply.OperatorFieldManager}
	if _, err := crds.Apply(ctx, m.CRDs); err != nil {
		return nil, time.Time{}, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "applying Istio's CRDs", err)
	}
	a := &apply.Applier{Client: rem.client, FieldManager: apply.OperatorFieldManager, OwnerUID: cp.Owner.UID}
	objs := m.Objects
	if certs.Secret != nil {
		// Not with an external CA: the user's cacerts is never written.
		objs = append([]*unstructured.Unstructured{certs.Secret}, m.Objects...)
	}
	if _, err := a.Apply(ctx, objs); err != nil {
		if out, ok := conflictOutcome(err, cp.ClusterName); ok {
			return nil, time.Time{}, out
		}
		return nil, time.Time{}, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "applying the remote pieces", err)
	}
	keep := map[string]bool{}
	for _, o := range objs {
		keep[apply.Key(o)] = true
	}
	if certs.Secret == nil {
		// External CA: cacerts is the user's, never pruned.
		keep["Secret/"+cp.Namespace+"/"+meshca.CACertsSecretName] = true
	}
	if _, err := a.Prune(ctx, labels.Set(render.OwnerLabels(cp.Owner)), render.PrunedKinds, keep); err != nil {
		return nil, time.Time{}, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "deleting objects no longer rendered", err)
	}

	var secrets []*unstructured.Unstructured
	var renew time.Time
	for _, c := range consumers(cp) {
		secret, at, err := r.remoteSecret(ctx, cp, rem, c)
		if err != nil {
			return nil, time.Time{}, remoteFailed(v1beta1.ReasonApplyFailed, cp.ClusterName, "preparing "+c.Name+"'s remote secret", err)
		}
		secrets = append(secrets, secret)
		if renew.IsZero() || (!at.IsZero() && at.Before(renew)) {
			renew = at
		}
	}
	pa := &apply.Applier{Client: r.Client, Uncached: r.APIReader, FieldManager: apply.OperatorFieldManager, OwnerUID: cp.Owner.UID}
	if _, err := pa.Apply(ctx, secrets); err != nil {
		if out, ok := conflictOutcome(err, "primary"); ok {
			return nil, time.Time{}, out
		}
		return nil, time.Time{}, conditions.Transient(v1beta1.ReasonApplyFailed, fmt.Sprintf("remote secrets of cluster %s: %v", cp.ClusterName, err), err)
	}
	keepSecrets := map[string]bool{}
	for _, s := range secrets {
		keepSecrets[apply.Key(s)] = true
	}
	if rem.connection == v1beta1.ConnectionTunnel {
		keepSecrets["Secret/"+meshca.Namespace+"/"+meshca.AgentSecretName(cp.ClusterName)] = true
	}
	if _, err := pa.Prune(ctx, labels.Set(render.OwnerLabels(cp.Owner)), []schema.GroupVersionKind{{Version: "v1", Kind: "Secret"}}, keepSecrets); err != nil {
		return nil, time.Time{}, conditions.Transient(v1beta1.ReasonApplyFailed, fmt.Sprintf("remote secrets of cluster %s: %v", cp.ClusterName, err), err)
	}
	return m, renew, conditions.Succeeded(fmt.Sprintf("%d objects applied in cluster %s; istiod discovers it through Secret %s/%s",
		len(objs), cp.ClusterName, cp.Remote.Primary.Namespace, render.RemoteSecretName(cp.ClusterName)))
}

// ensureNamespace creates a namespace in the remote if it is missing.
func ensureNamespace(ctx context.Context, rem *remote, name string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	a := &apply.Applier{Client: rem.client, FieldManager: apply.NamespaceLabelsManager}
	if _, err := a.Apply(ctx, []*unstructured.Unstructured{ns}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// eastWestAddress is the external address of the primary's east-west gateway.
func (r *Reconciler) eastWestAddress(ctx context.Context, ns string) (string, error) {
	svc := &corev1.Service{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.EastWestGatewayName}, svc)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the primary's east-west gateway: %w", err)
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			return in.IP, nil
		}
		if in.Hostname != "" {
			return in.Hostname, nil
		}
	}
	return "", nil
}

// consumers are the primary's components that read the remote: istiod, and
// Kiali when the Istio resource enables it.
func consumers(cp *render.ControlPlane) []render.Consumer {
	if cp.Kiali {
		return []render.Consumer{render.Istiod, render.Kiali}
	}
	return []render.Consumer{render.Istiod}
}

// remoteSecret renders the Secret a consumer (istiod, Kiali) reads the remote
// through. Over the tunnel it presents its own token; directly, a token of
// its service account in the remote, renewed before it expires.
func (r *Reconciler) remoteSecret(ctx context.Context, cp *render.ControlPlane, rem *remote, c render.Consumer) (*unstructured.Unstructured, time.Time, error) {
	caData := rem.config.CAData
	if len(caData) == 0 && rem.config.CAFile != "" {
		b, err := os.ReadFile(rem.config.CAFile)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("reading the CA file of the connection: %w", err)
		}
		caData = b
	}
	access := render.RemoteAccess{Server: rem.config.Host, CAData: caData}
	if rem.connection == v1beta1.ConnectionTunnel {
		// The consumer's projected token for the tunnel's audience.
		access.TokenFile = render.TunnelTokenPath
		if c.Identity == render.Istiod.Identity && r.Tunnel.IstiodTokenFile != "" {
			access.TokenFile = r.Tunnel.IstiodTokenFile
		}
		s, err := c.Secret(cp, access)
		return s, time.Time{}, err
	}

	// The account is read from the remote itself, never a cache: a token of
	// an account since deleted is revoked, however long it had to live.
	sa := &corev1.ServiceAccount{}
	if err := rem.client.Get(ctx, client.ObjectKey{Namespace: cp.Namespace, Name: c.ServiceAccount}, sa); err != nil {
		return nil, time.Time{}, fmt.Errorf("reading service account %s/%s in cluster %s: %w", cp.Namespace, c.ServiceAccount, cp.ClusterName, err)
	}
	token, expires, err := r.currentToken(ctx, cp, c, access.Server, string(sa.UID))
	if err != nil {
		return nil, time.Time{}, err
	}
	if token == "" {
		secs := int64(readerTokenTTL.Seconds())
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}
		if err := rem.client.SubResource("token").Create(ctx, sa, tr); err != nil {
			return nil, time.Time{}, fmt.Errorf("requesting a token for %s/%s in cluster %s: %w", cp.Namespace, c.ServiceAccount, cp.ClusterName, err)
		}
		token, expires = tr.Status.Token, tr.Status.ExpirationTimestamp.Time
	}
	access.Token = token
	s, err := c.Secret(cp, access)
	if err != nil {
		return nil, time.Time{}, err
	}
	ann := s.GetAnnotations()
	ann[annotationTokenExpiry] = expires.UTC().Format(time.RFC3339)
	ann[annotationTokenAccount] = string(sa.UID)
	s.SetAnnotations(ann)
	return s, expires.Add(-readerTokenRenew), nil
}

// currentToken returns the token of the live remote secret while it has
// long enough to live and was issued for the same server and the same
// service account (by UID); "" otherwise.
func (r *Reconciler) currentToken(ctx context.Context, cp *render.ControlPlane, c render.Consumer, server, accountUID string) (string, time.Time, error) {
	live := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: cp.Remote.Primary.Namespace, Name: c.SecretName(cp.ClusterName)}, live)
	if apierrors.IsNotFound(err) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, err
	}
	if accountUID == "" || live.Annotations[annotationTokenAccount] != accountUID {
		return "", time.Time{}, nil
	}
	expires, err := time.Parse(time.RFC3339, live.Annotations[annotationTokenExpiry])
	if err != nil || expires.Before(r.now().Add(readerTokenRenew)) {
		return "", time.Time{}, nil
	}
	kc, err := clientcmd.Load(live.Data[cp.ClusterName])
	if err != nil {
		return "", time.Time{}, nil
	}
	cl, ok := kc.Clusters[cp.ClusterName]
	a, ok2 := kc.AuthInfos[cp.ClusterName]
	if !ok || !ok2 || cl.Server != server || a.Token == "" {
		return "", time.Time{}, nil
	}
	return a.Token, expires, nil
}

// readiness: the remote's gateways rolled out and its proxies can reach istiod.
func (r *Reconciler) readiness(ctx context.Context, cp *render.ControlPlane, rem *remote, m *render.Manifest) conditions.Outcome {
	if cp.Remote.PilotAddress == "" {
		return conditions.Waiting(v1beta1.ReasonNoPilotAddress, fmt.Sprintf(
			"proxies in cluster %s have no address to reach istiod: set spec.pilotAddress, or give the primary's east-west gateway (Service %s/%s) an external address",
			cp.ClusterName, render.GatewayNamespace, render.EastWestGatewayName), 30*time.Second)
	}
	out := rollout.Status(ctx, rem.client, m.Objects)
	if outage(out.Err) {
		return remoteFailed(out.Reason, cp.ClusterName, "reading its rollouts", out.Err)
	}
	if out.Done {
		out.Message = fmt.Sprintf("cluster %s is a member of the mesh; its proxies reach istiod at %s", cp.ClusterName, cp.Remote.PilotAddress)
	}
	return out
}
