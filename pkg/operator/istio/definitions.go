package istio

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// definitions applies Istio's CRDs, waits until they are established, and
// issues this cluster's intermediate CA from the mesh's root.
func (r *Reconciler) definitions(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane, m *render.Manifest) (*meshca.Issued, outcome) {
	// Istio's CRDs are shared with everything that uses Istio's API (and may
	// predate meshfleet): applied without an owner, never deleted.
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

	now := r.now()
	root, created, err := meshca.Root(ctx, r.Client, r.APIReader, cp, now)
	if err != nil {
		return nil, caOutcome(err)
	}
	if created {
		r.Events.Eventf(ist, nil, corev1.EventTypeNormal, "RootCreated", "CreateRootCA",
			"created self-signed root CA %s/%s (SHA-256 %s)", meshca.Namespace, meshca.RootSecretName, ca.Fingerprint(root.Cert))
	}
	meshca.RecordExpiry(cp.ClusterName, "root", root.Cert.NotAfter)
	certs, err := meshca.CACerts(ctx, r.Client, cp, root, now)
	if err != nil {
		return nil, caOutcome(err)
	}
	if certs.Reissued != "" && certs.Reissued != "missing" {
		r.Events.Eventf(ist, nil, corev1.EventTypeNormal, "IntermediateReissued", "IssueIntermediateCA",
			"reissued intermediate CA of cluster %s: %s", cp.ClusterName, certs.Reissued)
	}
	ist.Status.Certificates = &v1beta1.CertificatesStatus{
		RootFingerprint:     ca.Fingerprint(root.Cert),
		RootExpiry:          &metav1.Time{Time: root.Cert.NotAfter.UTC()},
		IntermediateExpiry:  &metav1.Time{Time: certs.NotAfter.UTC()},
		IntermediateRenewal: &metav1.Time{Time: certs.RenewAt.UTC()},
	}
	return certs, succeeded(fmt.Sprintf("%d Istio CRDs established; intermediate CA for cluster %s valid until %s",
		len(m.CRDs), cp.ClusterName, certs.NotAfter.UTC().Format(time.RFC3339)))
}

// caOutcome turns a meshca error into the step's outcome: API errors are
// retried with backoff, the rest wait for the user (and are looked at again
// every 30s, since a missing Secret is not watched).
func caOutcome(err error) outcome {
	var e *meshca.Error
	if errors.As(err, &e) && e.Transient {
		return transient(v1beta1.ReasonCAError, e.Message, e)
	}
	return waiting(v1beta1.ReasonCAError, err.Error(), 30*time.Second)
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
