package meshca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// ExternalCACerts checks the cacerts Secret the user supplied in the
// cluster cp describes (spec.security.externalCA), read through r, which
// must read the API server (the Secret carries none of meshfleet's labels,
// so no cache holds it). It returns the intermediate's expiry and warnings
// with Secret nil: in this mode the operator never writes a cacerts. A
// missing or unusable Secret is an error with reason CACertsInvalid naming
// the cluster, the Secret, the keys and the fix.
func ExternalCACerts(ctx context.Context, r client.Reader, cp *render.ControlPlane, now time.Time) (*Issued, error) {
	ext := cp.CA.External
	if ext == nil {
		return nil, errors.New("external CA checked on a control plane without spec.security.externalCA; this is a meshfleet bug")
	}
	roots, err := ca.ParseRoots([]byte(ext.RootPEM))
	if err != nil {
		return nil, permanent("spec.security.externalCA.rootCertificate: %v", err)
	}
	key := client.ObjectKey{Namespace: cp.Namespace, Name: CACertsSecretName}
	live := &corev1.Secret{}
	err = r.Get(ctx, key, live)
	if apierrors.IsNotFound(err) {
		return nil, invalidCACerts(cp, roots, "Secret %s not found in cluster %s", key, cp.ClusterName)
	}
	if err != nil {
		return nil, transient(err, "reading Secret %s of cluster %s: %v", key, cp.ClusterName, err)
	}
	if marks := ownershipMarks(live); len(marks) > 0 {
		// An operator-issued cacerts (self-signed mode before) with the
		// user's data written over it: pruning, uninstall or garbage
		// collection would delete it as the operator's.
		return nil, &Error{Reason: v1beta1.ReasonCACertsInvalid, Message: fmt.Sprintf(
			"Secret %s of cluster %s carries meshfleet's ownership marks (%s), left from when the operator issued it: uninstalling or leaving would delete it as the operator's. With spec.security.externalCA it must be yours: recreate it without them (kubectl -n %s delete secret %s, then kubectl apply -f your cacerts manifest, e.g. from meshctl ca sign-intermediate); the operator writes nothing to it",
			key, cp.ClusterName, strings.Join(marks, ", "), cp.Namespace, CACertsSecretName)}
	}
	check, err := ca.CheckExternalCACerts(live.Data, roots, Constraints(cp), ext.WarnBefore.Duration, now)
	var p *ca.CACertsProblem
	if errors.As(err, &p) {
		return nil, invalidCACerts(cp, roots, "Secret %s of cluster %s, key %s: %s", key, cp.ClusterName, strings.Join(p.Keys, ", "), p.Problem)
	}
	if err != nil {
		return nil, permanent("checking Secret %s of cluster %s: %v", key, cp.ClusterName, err)
	}
	RecordExpiry(cp.ClusterName, "intermediate", check.Intermediate.NotAfter)
	RecordExpiry(cp.ClusterName, "root", check.Root.NotAfter)
	return &Issued{
		NotAfter: check.Intermediate.NotAfter,
		RenewAt:  check.WarnAt,
		Root:     check.Root,
		External: check,
	}, nil
}

// ownershipMarks lists what on s would make meshfleet treat it as its own
// (and delete it on prune, uninstall or garbage collection).
func ownershipMarks(s *corev1.Secret) []string {
	var marks []string
	if v := s.Annotations[apply.OwnerUIDAnnotation]; v != "" {
		marks = append(marks, apply.OwnerUIDAnnotation+"="+v)
	}
	for _, l := range []string{render.LabelManagedBy, render.LabelOwnerKind} {
		if v := s.Labels[l]; v != "" {
			marks = append(marks, l+"="+v)
		}
	}
	for _, o := range s.OwnerReferences {
		marks = append(marks, "ownerReference "+o.Kind+"/"+o.Name)
	}
	return marks
}

// invalidCACerts is the error for a cluster whose user-supplied cacerts
// cannot serve: what is wrong, then how to make one.
func invalidCACerts(cp *render.ControlPlane, roots []*x509.Certificate, format string, args ...any) *Error {
	role := ""
	if cp.Remote == nil {
		role = " --primary"
	}
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf(
		". spec.security.externalCA keeps the root key outside the clusters, so the operator neither issues nor writes cacerts: sign an intermediate for cluster %s with your root %q (SHA-256 %s) and create Secret %s/%s there with ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem (Istio's plug-in CA; or tls.crt, tls.key and ca.crt as cert-manager writes them, ca.crt being this root). Offline, on the machine that holds the root key: meshctl ca sign-intermediate --root-cert root-cert.pem --root-key root-key.pem --cluster %s%s -n %s > cacerts.yaml, then kubectl apply -f cacerts.yaml against cluster %s. The operator never overwrites or deletes that Secret",
		cp.ClusterName, roots[0].Subject.CommonName, ca.Fingerprint(roots[0]), cp.Namespace, CACertsSecretName, cp.ClusterName, role, cp.Namespace, cp.ClusterName)
	return &Error{Message: msg, Reason: v1beta1.ReasonCACertsInvalid}
}

// LeftoverRoot reports a root key that a self-signed mesh left in
// Namespace/RootSecretName, read through r (the API server): after a switch
// to an external CA it is still readable by istiod. It returns "" when
// there is none.
func LeftoverRoot(ctx context.Context, r client.Reader) (string, error) {
	s := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: RootSecretName}, s)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", transient(err, "reading Secret %s/%s: %v", Namespace, RootSecretName, err)
	}
	if len(s.Data[RootKeyKey]) == 0 {
		return "", nil
	}
	return fmt.Sprintf("Secret %s/%s still holds a root key (from self-signed mode), readable by istiod: once every cluster's cacerts chains to the external root, move it out of the cluster and delete it (kubectl -n %s delete secret %s)",
		Namespace, RootSecretName, Namespace, RootSecretName), nil
}

// Status is the status.certificates of a cluster whose intermediate is
// certs, under the CA mode of cp (root is the operator's root, nil in
// External mode).
func Status(cp *render.ControlPlane, root *ca.KeyPair, certs *Issued, warnings []string) *v1beta1.CertificatesStatus {
	st := &v1beta1.CertificatesStatus{
		Mode:                v1beta1.CAModeSelfSigned,
		IntermediateExpiry:  &metav1.Time{Time: certs.NotAfter.UTC()},
		IntermediateRenewal: &metav1.Time{Time: certs.RenewAt.UTC()},
	}
	rootCert := certs.Root
	switch {
	case cp.CA.External != nil:
		st.Mode = v1beta1.CAModeExternal
		if certs.External != nil {
			st.Warnings = append(st.Warnings, certs.External.Warnings...)
		}
	case !cp.CA.SelfSigned:
		st.Mode = v1beta1.CAModeUserSecret
	}
	if root != nil {
		rootCert = root.Cert
	}
	if rootCert != nil {
		st.RootFingerprint = ca.Fingerprint(rootCert)
		st.RootExpiry = &metav1.Time{Time: rootCert.NotAfter.UTC()}
	}
	st.Warnings = append(st.Warnings, warnings...)
	return st
}
