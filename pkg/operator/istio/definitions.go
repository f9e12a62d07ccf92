package istio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	generation := r.renders.Generation(cp.Owner)
	if !r.crds.unchanged(ctx, r.Client, ist.UID, generation, m.CRDs) {
		// Istio's CRDs are shared with everything that uses Istio's API (and
		// may predate meshfleet): applied without an owner, never deleted.
		applier := &apply.Applier{Client: r.Client, FieldManager: apply.OperatorFieldManager}
		if _, err := applier.Apply(ctx, m.CRDs); err != nil {
			return nil, transient(v1beta1.ReasonApplyFailed, fmt.Sprintf("applying Istio's CRDs failed: %v", err), err)
		}
		seen := map[string]string{}
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
			seen[crd.GetName()] = liveVersion(live)
		}
		r.crds.record(ist.UID, generation, seen)
	}

	now := r.now()
	if cp.CA.External != nil {
		return r.externalCA(ctx, ist, cp, m, now)
	}
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
	ist.Status.Certificates = meshca.Status(cp, root, certs, nil)
	return certs, succeeded(fmt.Sprintf("%d Istio CRDs established; intermediate CA for cluster %s valid until %s",
		len(m.CRDs), cp.ClusterName, certs.NotAfter.UTC().Format(time.RFC3339)))
}

// externalCA checks the user's cacerts of this cluster against the external
// root (spec.security.externalCA): the operator holds no root and writes no
// cacerts. Warnings (expiry near, constraints missing, a root key left from
// self-signed mode) are recorded in the status and as a Warning event when
// they change.
func (r *Reconciler) externalCA(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane, m *render.Manifest, now time.Time) (*meshca.Issued, outcome) {
	certs, err := meshca.ExternalCACerts(ctx, r.APIReader, cp, now)
	if err != nil {
		ist.Status.Certificates = &v1beta1.CertificatesStatus{Mode: v1beta1.CAModeExternal}
		return nil, caOutcome(err)
	}
	leftover, err := meshca.LeftoverRoot(ctx, r.APIReader)
	if err != nil {
		return nil, caOutcome(err)
	}
	var extra []string
	if leftover != "" {
		extra = append(extra, leftover)
	}
	var before []string
	if ist.Status.Certificates != nil {
		before = ist.Status.Certificates.Warnings
	}
	ist.Status.Certificates = meshca.Status(cp, nil, certs, extra)
	warnings := ist.Status.Certificates.Warnings
	if len(warnings) > 0 && !slices.Equal(before, warnings) {
		r.Events.Eventf(ist, nil, corev1.EventTypeWarning, "CACertsWarning", "CheckCACerts",
			"cluster %s: %s", cp.ClusterName, strings.Join(warnings, "; "))
	}
	msg := fmt.Sprintf("%d Istio CRDs established; cluster %s's own intermediate CA (Secret %s/%s, signed outside the cluster) chains to the external root %q, valid until %s",
		len(m.CRDs), cp.ClusterName, cp.Namespace, meshca.CACertsSecretName, certs.External.Root.Subject.CommonName, certs.NotAfter.UTC().Format(time.RFC3339))
	if len(warnings) > 0 {
		msg += "; warning: " + strings.Join(warnings, "; warning: ")
	}
	return certs, succeeded(msg)
}

// caOutcome turns a meshca error into the step's outcome: API errors are
// retried with backoff, the rest wait for the user (and are looked at again
// every 30s, since a missing Secret is not watched).
func caOutcome(err error) outcome {
	var e *meshca.Error
	if errors.As(err, &e) && e.Transient {
		return transient(v1beta1.ReasonCAError, e.Message, e)
	}
	reason := v1beta1.ReasonCAError
	if e != nil && e.Reason != "" {
		reason = e.Reason
	}
	return waiting(reason, err.Error(), 30*time.Second)
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
