// Package meshca keeps the mesh's certificate authorities in the clusters:
// the root CA in a Secret of the primary (self-signed, or the user's), each
// cluster's intermediate as Istio's plug-in Secret cacerts, and the tunnel's
// own CA with the tunnel agents' certificates it issues. The root and the
// tunnel CA live in Namespace, which no Istio workload, gateway or istiod
// service account is granted. The x509 work is package ca's; this package
// does the reads and decides what to write.
package meshca

import (
	"bytes"
	"context"
	"crypto/x509"
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
	// Namespace holds the root CA and the tunnel CA in the primary: the
	// operator's namespace, where no Istio component runs.
	Namespace = "meshfleet-system"
	// RootSecretName holds the self-signed root and its key, in Namespace.
	// It lives only in the primary cluster and is kept when the control
	// plane is uninstalled, so that a reinstall keeps the mesh's identity.
	// Before meshfleet isolated it, it lived in the Istio resource's
	// namespace; Root moves it from there.
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
	// Reason is the condition reason for the user; ReasonCAError when empty.
	Reason string
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
// (cp.CA.SecretName, read through api from Namespace, else from cp's
// namespace) or the self-signed one in Namespace/RootSecretName, created on
// first use through c, or moved there from cp's namespace where older
// versions kept it. created reports that a new root was created now.
func Root(ctx context.Context, c client.Client, api client.Reader, cp *render.ControlPlane, now time.Time) (root *ca.KeyPair, created bool, err error) {
	if !cp.CA.SelfSigned {
		kp, err := userRoot(ctx, api, cp, now)
		return kp, false, err
	}
	key := client.ObjectKey{Namespace: Namespace, Name: RootSecretName}
	legacy := client.ObjectKey{Namespace: cp.Namespace, Name: RootSecretName}
	kp, err := loadCA(ctx, c, key, now)
	if err != nil {
		return nil, false, err
	}
	if kp != nil {
		// A move that copied the root but failed to delete the old copy.
		return kp, false, deleteLegacyCopy(ctx, c, legacy, kp)
	}
	if kp, err := moveLegacyRoot(ctx, c, api, legacy, key, now); err != nil || kp != nil {
		return kp, false, err
	}
	kp, err = ca.NewRoot(ca.RootOptions{TTL: cp.CA.RootTTL.Duration, Now: now,
		CommonName: "meshfleet root CA " + cp.Owner.Namespace + "/" + cp.Owner.Name})
	if err != nil {
		return nil, false, permanent("creating the root CA failed: %v", err)
	}
	if err := createCA(ctx, c, key, kp, "root-ca", rootDescription); err != nil {
		return nil, false, err
	}
	return kp, true, nil
}

const rootDescription = "Root CA of the mesh. Its key never leaves this cluster and this namespace. Kept on uninstall; deleting it makes the operator create a new root and reissue every cluster's intermediate."

// userRoot reads the user's root named by spec.security.caSecretRef:
// from Namespace, where no Istio component can read it, else (as before
// meshfleet isolated the root) from the Istio resource's namespace.
func userRoot(ctx context.Context, api client.Reader, cp *render.ControlPlane, now time.Time) (*ca.KeyPair, error) {
	s := &corev1.Secret{}
	var key client.ObjectKey
	for _, ns := range []string{Namespace, cp.Namespace} {
		key = client.ObjectKey{Namespace: ns, Name: cp.CA.SecretName}
		err := api.Get(ctx, key, s)
		if err == nil {
			break
		}
		if !apierrors.IsNotFound(err) {
			return nil, transient(err, "reading Secret %s: %v", key, err)
		}
		if ns == cp.Namespace {
			return nil, permanent(
				"spec.security.caSecretRef: Secret %s/%s not found, nor %s/%s; create it with your root CA as tls.crt and tls.key, in %s where no gateway or workload can read it (kubectl -n %s create secret tls %s --cert=root.pem --key=root-key.pem)",
				cp.Namespace, cp.CA.SecretName, Namespace, cp.CA.SecretName, Namespace, Namespace, cp.CA.SecretName)
		}
	}
	certPEM, keyPEM := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(certPEM) == 0 {
		certPEM, keyPEM = s.Data[RootCertKey], s.Data[RootKeyKey]
	}
	kp, err := ca.ParseKeyPair(certPEM, keyPEM, now)
	if err != nil {
		return nil, permanent(
			"spec.security.caSecretRef: Secret %s does not hold a usable root CA: %v; put the root certificate in tls.crt and its key in tls.key", key, err)
	}
	return kp, nil
}

// loadCA reads a CA Secret written by createCA; nil when there is none.
func loadCA(ctx context.Context, c client.Reader, key client.ObjectKey, now time.Time) (*ca.KeyPair, error) {
	s := &corev1.Secret{}
	err := c.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, transient(err, "reading Secret %s: %v", key, err)
	}
	kp, err := ca.ParseKeyPair(s.Data[RootCertKey], s.Data[RootKeyKey], now)
	if err != nil {
		return nil, permanent(
			"Secret %s holds no usable CA (%v); delete it to let the operator create a new one (for the root, every cluster's intermediate is then reissued; for the tunnel CA, every agent certificate)", key, err)
	}
	return kp, nil
}

// createCA writes kp as a new CA Secret at key, creating the namespace when
// it is missing. It never overwrites: a concurrent creator wins, and its CA
// is read next time.
func createCA(ctx context.Context, c client.Client, key client.ObjectKey, kp *ca.KeyPair, role, description string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: key.Namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return transient(err, "creating namespace %s for Secret %s: %v", key.Namespace, key, err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: key.Name, Namespace: key.Namespace,
			Labels:      map[string]string{render.LabelManagedBy: render.ManagedByValue, LabelRole: role},
			Annotations: map[string]string{"meshfleet.io/description": description},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{RootCertKey: kp.CertPEM, RootKeyKey: kp.KeyPEM},
	}
	if err := c.Create(ctx, s); err != nil {
		return transient(err, "creating Secret %s: %v", key, err)
	}
	return nil
}

// moveLegacyRoot moves the root an older meshfleet kept at from (readable by
// the gateways of that namespace) to to: copied, read back and compared, and
// only then deleted at from, so that an upgraded mesh keeps its identity.
// It returns nil when there is nothing at from.
func moveLegacyRoot(ctx context.Context, c client.Client, api client.Reader, from, to client.ObjectKey, now time.Time) (*ca.KeyPair, error) {
	old := &corev1.Secret{}
	err := api.Get(ctx, from, old)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, transient(err, "reading Secret %s: %v", from, err)
	}
	kp, err := ca.ParseKeyPair(old.Data[RootCertKey], old.Data[RootKeyKey], now)
	if err != nil {
		return nil, permanent(
			"Secret %s (where older meshfleet versions kept the root) holds no usable root CA (%v); fix or delete it to let the operator create a new root in %s", from, err, to)
	}
	if err := createCA(ctx, c, to, kp, "root-ca", rootDescription); err != nil {
		return nil, err
	}
	copied := &corev1.Secret{}
	if err := api.Get(ctx, to, copied); err != nil {
		return nil, transient(err, "reading back the moved root %s: %v", to, err)
	}
	if !bytes.Equal(copied.Data[RootCertKey], old.Data[RootCertKey]) || !bytes.Equal(copied.Data[RootKeyKey], old.Data[RootKeyKey]) {
		return nil, permanent("the root copied to %s differs from %s; delete %s to let the operator copy it again", to, from, to)
	}
	if err := c.Delete(ctx, old, client.Preconditions{UID: &old.UID}); client.IgnoreNotFound(err) != nil {
		return nil, transient(err, "deleting the old root %s after copying it to %s: %v", from, to, err)
	}
	return kp, nil
}

// deleteLegacyCopy deletes the Secret at legacy when it holds the same root
// certificate as kp; a different root there is left alone.
func deleteLegacyCopy(ctx context.Context, c client.Client, legacy client.ObjectKey, kp *ca.KeyPair) error {
	old := &corev1.Secret{}
	err := c.Get(ctx, legacy, old)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return transient(err, "reading Secret %s: %v", legacy, err)
	}
	if !bytes.Equal(old.Data[RootCertKey], kp.CertPEM) {
		return nil
	}
	if err := c.Delete(ctx, old, client.Preconditions{UID: &old.UID}); client.IgnoreNotFound(err) != nil {
		return transient(err, "deleting the old copy of the root %s: %v", legacy, err)
	}
	return nil
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
	// Root is the root certificate the intermediate chains to.
	Root *x509.Certificate
	// External is the check of a user-supplied cacerts (externalCA; Secret
	// is nil then: the operator does not write it).
	External *ca.ExternalCheck
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
	constraints := Constraints(cp)
	reason := ca.ReissueReason(data, root, cp.ClusterName, cp.CA.RenewBefore.Duration, now)
	if reason == "" {
		if im, _, err := ca.ParsePluginCerts(data, now); err == nil {
			if why := ca.ConstraintsReason(im.Cert, constraints); why != "" {
				reason = "constraints: " + why
			}
		}
	}
	if reason == "" {
		// A shortened intermediateCertTTL applies at once.
		if im, _, err := ca.ParsePluginCerts(data, now); err == nil && im.Cert.NotAfter.After(now.Add(cp.CA.IntermediateTTL.Duration+time.Minute)) {
			reason = fmt.Sprintf("valid until %s, longer than intermediateCertTTL (%s) allows",
				im.Cert.NotAfter.UTC().Format(time.RFC3339), cp.CA.IntermediateTTL.Duration)
		}
	}
	if reason != "" {
		im, err := ca.IssueIntermediate(root, ca.IntermediateOptions{ClusterName: cp.ClusterName, TTL: cp.CA.IntermediateTTL.Duration, Now: now, Constraints: constraints})
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
		Root:     root.Cert,
	}, nil
}

// Constraints are the names cp's intermediate may sign
// (ca.ClusterConstraints): istiod's serving names only in the primary.
func Constraints(cp *render.ControlPlane) ca.Constraints {
	return ca.ClusterConstraints(cp.Namespace, cp.Remote == nil)
}
