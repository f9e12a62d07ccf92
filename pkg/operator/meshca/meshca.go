// Package meshca keeps the mesh's certificate authority in the clusters: the
// root CA in a Secret of the primary (self-signed, or the user's), and each
// cluster's intermediate as Istio's plug-in Secret cacerts. The x509 work is
// package ca's; this package does the reads and decides what to write.
package meshca

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
	// RootCertKey and RootKeyKey are the keys of RootSecretName.
	RootCertKey = "root-cert.pem"
	RootKeyKey  = "root-key.pem"
	// LabelRole marks the root Secret for the cache.
	LabelRole = "meshfleet.io/role"
)

// Error is a CA problem. Transient ones (API errors) are retried with
// backoff; the others need the user and say what to do.
type Error struct {
	Message   string
	Transient bool
	Err       error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the underlying API error, if any.
func (e *Error) Unwrap() error { return e.Err }

func transient(err error, format string, args ...any) *Error {
	return &Error{Message: fmt.Sprintf(format, args...), Transient: true, Err: err}
}

func permanent(format string, args ...any) *Error {
	return &Error{Message: fmt.Sprintf(format, args...)}
}

// Root returns the mesh's root CA for the control plane cp: the user's
// (cp.CA.SecretName, read through api) or the self-signed one in
// RootSecretName, created on first use through c. created reports that it
// was created now.
func Root(ctx context.Context, c client.Client, api client.Reader, cp *render.ControlPlane, now time.Time) (root *ca.KeyPair, created bool, err error) {
	if !cp.CA.SelfSigned {
		s := &corev1.Secret{}
		key := client.ObjectKey{Namespace: cp.Namespace, Name: cp.CA.SecretName}
		if err := api.Get(ctx, key, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, false, permanent(
					"spec.security.caSecretRef: Secret %s not found; create it with your root CA as tls.crt and tls.key (kubectl -n %s create secret tls %s --cert=root.pem --key=root-key.pem)",
					key, key.Namespace, key.Name)
			}
			return nil, false, transient(err, "reading Secret %s: %v", key, err)
		}
		certPEM, keyPEM := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
		if len(certPEM) == 0 {
			certPEM, keyPEM = s.Data[RootCertKey], s.Data[RootKeyKey]
		}
		kp, err := ca.ParseKeyPair(certPEM, keyPEM, now)
		if err != nil {
			return nil, false, permanent(
				"spec.security.caSecretRef: Secret %s does not hold a usable root CA: %v; put the root certificate in tls.crt and its key in tls.key", key, err)
		}
		return kp, false, nil
	}

	s := &corev1.Secret{}
	key := client.ObjectKey{Namespace: cp.Namespace, Name: RootSecretName}
	err = c.Get(ctx, key, s)
	if err == nil {
		kp, perr := ca.ParseKeyPair(s.Data[RootCertKey], s.Data[RootKeyKey], now)
		if perr != nil {
			return nil, false, permanent(
				"Secret %s holds no usable root CA (%v); delete it to let the operator create a new root (every cluster's intermediate is then reissued)", key, perr)
		}
		return kp, false, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, false, transient(err, "reading Secret %s: %v", key, err)
	}
	kp, err := ca.NewRoot(ca.RootOptions{TTL: cp.CA.RootTTL.Duration, Now: now,
		CommonName: "meshfleet root CA " + cp.Owner.Namespace + "/" + cp.Owner.Name})
	if err != nil {
		return nil, false, permanent("creating the root CA failed: %v", err)
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
		Data: map[string][]byte{RootCertKey: kp.CertPEM, RootKeyKey: kp.KeyPEM},
	}
	// Create, never overwrite: a concurrent creator wins and we read its root next time.
	if err := c.Create(ctx, s); err != nil {
		return nil, false, transient(err, "creating Secret %s: %v", key, err)
	}
	return kp, true, nil
}

// Issued is the cacerts Secret of one cluster, ready to apply.
type Issued struct {
	// Secret is the cacerts Secret, labelled for its owner.
	Secret *unstructured.Unstructured
	// NotAfter is when the intermediate expires.
	NotAfter time.Time
	// RenewAt is when it must be reissued.
	RenewAt time.Time
	// Reissued says why a new intermediate was issued now ("" when the live
	// one was kept; "missing" on first issue).
	Reissued string
}

// CACerts returns the cacerts Secret of the cluster cp describes, reading the
// live one through r: kept while it is good, else a fresh intermediate signed
// by root.
func CACerts(ctx context.Context, r client.Reader, cp *render.ControlPlane, root *ca.KeyPair, now time.Time) (*Issued, error) {
	live := &corev1.Secret{}
	key := client.ObjectKey{Namespace: cp.Namespace, Name: CACertsSecretName}
	err := r.Get(ctx, key, live)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, transient(err, "reading Secret %s of cluster %s: %v", key, cp.ClusterName, err)
	}
	data := live.Data
	reason := ca.ReissueReason(data, root, cp.ClusterName, cp.CA.RenewBefore.Duration, now)
	if reason == "" {
		// A shortened intermediateCertTTL applies at once.
		if im, _, err := ca.ParsePluginCerts(data, now); err == nil && im.Cert.NotAfter.After(now.Add(cp.CA.IntermediateTTL.Duration+time.Minute)) {
			reason = fmt.Sprintf("valid until %s, longer than intermediateCertTTL (%s) allows",
				im.Cert.NotAfter.UTC().Format(time.RFC3339), cp.CA.IntermediateTTL.Duration)
		}
	}
	if reason != "" {
		im, err := ca.IssueIntermediate(root, ca.IntermediateOptions{ClusterName: cp.ClusterName, TTL: cp.CA.IntermediateTTL.Duration, Now: now})
		if err != nil {
			return nil, permanent("issuing the intermediate CA for cluster %s failed: %v", cp.ClusterName, err)
		}
		data = ca.NewPluginCerts(root, im).Data()
	}
	im, _, err := ca.ParsePluginCerts(data, now)
	if err != nil {
		return nil, permanent("the issued cacerts of cluster %s do not parse: %v; this is a meshfleet bug", cp.ClusterName, err)
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: render.OwnerLabels(cp.Owner)},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(secret)
	if err != nil {
		return nil, permanent("cacerts of cluster %s: %v", cp.ClusterName, err)
	}
	obj := &unstructured.Unstructured{Object: u}
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	RecordExpiry(cp.ClusterName, "intermediate", im.Cert.NotAfter)
	return &Issued{
		Secret:   obj,
		NotAfter: im.Cert.NotAfter,
		RenewAt:  ca.RenewalTime(im.Cert, cp.CA.RenewBefore.Duration),
		Reissued: reason,
	}, nil
}
