package istio

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// Names of the Secrets that hold the mesh's certificates.
const (
	// RootSecretName holds the self-signed root and its key. It lives only in
	// the primary cluster and is kept when the control plane is uninstalled,
	// so that a reinstall keeps the mesh's identity.
	RootSecretName = "meshfleet-root-ca"
	// CACertsSecretName is Istio's plug-in CA Secret read by istiod.
	CACertsSecretName = "cacerts"
	// rootCertKey and rootKeyKey are the keys of RootSecretName.
	rootCertKey = "root-cert.pem"
	rootKeyKey  = "root-key.pem"
	// LabelRole marks the root Secret for the cache.
	LabelRole = "meshfleet.io/role"
)

// issued is the cacerts Secret to apply and when it must be renewed.
type issued struct {
	secret  *unstructured.Unstructured
	renewAt time.Time
}

// definitions applies Istio's CRDs, waits until they are established, and
// issues this cluster's intermediate CA from the mesh's root.
func (r *Reconciler) definitions(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane, m *render.Manifest) (*issued, outcome) {
	applier := &apply.Applier{Client: r.Client, FieldManager: FieldManager}
	if _, err := applier.Apply(ctx, m.CRDs); err != nil {
		return nil, transient(v1beta1.ReasonApplyFailed, fmt.Sprintf("applying Istio's CRDs failed: %v", err), err)
	}
	for _, crd := range m.CRDs {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(crd.GroupVersionKind())
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(crd), live); err != nil {
			return nil, transient(v1beta1.ReasonCRDNotEstablished, fmt.Sprintf("reading CRD %s: %v", crd.GetName(), err), err)
		}
		if !established(live) {
			return nil, waiting(v1beta1.ReasonCRDNotEstablished,
				fmt.Sprintf("waiting for CRD %s to be established by the API server", crd.GetName()), time.Second)
		}
	}

	root, out := r.root(ctx, ist, cp)
	if !out.done {
		return nil, out
	}
	certs, out := r.cacerts(ctx, ist, cp, root)
	if !out.done {
		return nil, out
	}
	ist.Status.Certificates = &v1beta1.CertificatesStatus{
		RootFingerprint:     ca.Fingerprint(root.Cert),
		RootExpiry:          &metav1.Time{Time: root.Cert.NotAfter.UTC()},
		IntermediateExpiry:  &metav1.Time{Time: certs.notAfter.UTC()},
		IntermediateRenewal: &metav1.Time{Time: certs.renewAt.UTC()},
	}
	return certs.issued, succeeded(fmt.Sprintf("%d Istio CRDs established; intermediate CA for cluster %s valid until %s",
		len(m.CRDs), cp.ClusterName, certs.notAfter.UTC().Format(time.RFC3339)))
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// root returns the mesh's root CA: the user's, or the self-signed one the
// operator created on first install.
func (r *Reconciler) root(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane) (*ca.KeyPair, outcome) {
	now := r.now()
	if !cp.CA.SelfSigned {
		s := &corev1.Secret{}
		key := client.ObjectKey{Namespace: ist.Namespace, Name: cp.CA.SecretName}
		if err := r.APIReader.Get(ctx, key, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, waiting(v1beta1.ReasonCAError, fmt.Sprintf(
					"spec.security.caSecretRef: Secret %s/%s not found; create it with your root CA as tls.crt and tls.key (kubectl -n %s create secret tls %s --cert=root.pem --key=root-key.pem)",
					key.Namespace, key.Name, key.Namespace, key.Name), 30*time.Second)
			}
			return nil, transient(v1beta1.ReasonCAError, fmt.Sprintf("reading Secret %s: %v", key, err), err)
		}
		certPEM, keyPEM := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
		if len(certPEM) == 0 {
			certPEM, keyPEM = s.Data[rootCertKey], s.Data[rootKeyKey]
		}
		kp, err := ca.ParseKeyPair(certPEM, keyPEM, now)
		if err != nil {
			return nil, waiting(v1beta1.ReasonCAError, fmt.Sprintf(
				"spec.security.caSecretRef: Secret %s does not hold a usable root CA: %v; put the root certificate in tls.crt and its key in tls.key",
				key, err), 30*time.Second)
		}
		return kp, succeeded("")
	}

	s := &corev1.Secret{}
	key := client.ObjectKey{Namespace: ist.Namespace, Name: RootSecretName}
	err := r.Client.Get(ctx, key, s)
	if err == nil {
		kp, perr := ca.ParseKeyPair(s.Data[rootCertKey], s.Data[rootKeyKey], now)
		if perr != nil {
			return nil, failed(v1beta1.ReasonCAError, fmt.Sprintf(
				"Secret %s holds no usable root CA (%v); delete it to let the operator create a new root (every cluster's intermediate is then reissued)", key, perr))
		}
		return kp, succeeded("")
	}
	if !apierrors.IsNotFound(err) {
		return nil, transient(v1beta1.ReasonCAError, fmt.Sprintf("reading Secret %s: %v", key, err), err)
	}
	kp, err := ca.NewRoot(ca.RootOptions{TTL: cp.CA.RootTTL.Duration, Now: now, CommonName: "meshfleet root CA " + ist.Namespace + "/" + ist.Name})
	if err != nil {
		return nil, failed(v1beta1.ReasonCAError, fmt.Sprintf("creating the root CA failed: %v", err))
	}
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: key.Name, Namespace: key.Namespace,
			Labels: map[string]string{render.LabelManagedBy: render.ManagedByValue, LabelRole: "root-ca"},
			Annotations: map[string]string{
				"meshfleet.io/description": "Root CA of the mesh. Its key never leaves this cluster. Kept on uninstall; deleting it makes the operator create a new root and reissue every cluster's intermediate.",
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{rootCertKey: kp.CertPEM, rootKeyKey: kp.KeyPEM},
	}
	// Create, never overwrite: a concurrent creator wins and we read its root next time.
	if err := r.Client.Create(ctx, s); err != nil {
		return nil, transient(v1beta1.ReasonCAError, fmt.Sprintf("creating Secret %s: %v", key, err), err)
	}
	r.Events.Eventf(ist, nil, corev1.EventTypeNormal, "RootCreated", "CreateRootCA",
		"created self-signed root CA %s (SHA-256 %s)", key, ca.Fingerprint(kp.Cert))
	return kp, succeeded("")
}

type intermediate struct {
	*issued
	notAfter time.Time
}

// cacerts returns the cacerts Secret for this cluster: the live one when it
// is still good, else a fresh intermediate signed by root.
func (r *Reconciler) cacerts(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane, root *ca.KeyPair) (*intermediate, outcome) {
	now := r.now()
	live := &corev1.Secret{}
	key := client.ObjectKey{Namespace: cp.Namespace, Name: CACertsSecretName}
	err := r.Client.Get(ctx, key, live)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, transient(v1beta1.ReasonCAError, fmt.Sprintf("reading Secret %s: %v", key, err), err)
	}
	existed := err == nil && len(live.Data) > 0
	data := live.Data
	reason := ca.ReissueReason(data, root, cp.ClusterName, cp.CA.RenewBefore.Duration, now)
	if reason == "" {
		// A shortened spec.security.intermediateCertTTL applies at once.
		if im, _, err := ca.ParsePluginCerts(data, now); err == nil && im.Cert.NotAfter.After(now.Add(cp.CA.IntermediateTTL.Duration+time.Minute)) {
			reason = fmt.Sprintf("valid until %s, longer than spec.security.intermediateCertTTL (%s) allows",
				im.Cert.NotAfter.UTC().Format(time.RFC3339), cp.CA.IntermediateTTL.Duration)
		}
	}
	if reason != "" {
		im, err := ca.IssueIntermediate(root, ca.IntermediateOptions{ClusterName: cp.ClusterName, TTL: cp.CA.IntermediateTTL.Duration, Now: now})
		if err != nil {
			return nil, failed(v1beta1.ReasonCAError, fmt.Sprintf("issuing the intermediate CA for cluster %s failed: %v", cp.ClusterName, err))
		}
		data = ca.NewPluginCerts(root, im).Data()
		if existed {
			r.Events.Eventf(ist, nil, corev1.EventTypeNormal, "IntermediateReissued", "IssueIntermediateCA",
				"reissued intermediate CA of cluster %s: %s", cp.ClusterName, reason)
		}
	}
	im, _, err := ca.ParsePluginCerts(data, now)
	if err != nil {
		return nil, failed(v1beta1.ReasonCAError, fmt.Sprintf("the issued cacerts do not parse: %v; this is a meshfleet bug", err))
	}

	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: render.OwnerLabels(cp.Owner)},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(secret)
	if err != nil {
		return nil, transient(v1beta1.ReasonCAError, err.Error(), err)
	}
	obj := &unstructured.Unstructured{Object: u}
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	return &intermediate{
		issued:   &issued{secret: obj, renewAt: ca.RenewalTime(im.Cert, cp.CA.RenewBefore.Duration)},
		notAfter: im.Cert.NotAfter,
	}, succeeded("")
}
