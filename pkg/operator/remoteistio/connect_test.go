package remoteistio

import (
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// TestClassifyRefusalIsRetried: a cluster that refuses the operator (401,
// 403) is looked at again later, as the fix (RBAC or credentials in that
// cluster, or a restarting API server finishing loading RBAC) happens where
// no watch of the operator sees it.
func TestClassifyRefusalIsRetried(t *testing.T) {
	for name, err := range map[string]error{
		"401": apierrors.NewUnauthorized("Unauthorized"),
		"403": apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "kube-system", nil),
	} {
		for _, conn := range []string{v1beta1.ConnectionTunnel, v1beta1.ConnectionDirect} {
			o := classify(err, "east", "https://east:6443", conn)
			if o.Done || o.Reason != v1beta1.ReasonUnauthorized {
				t.Errorf("%s over %s: outcome %+v, want reason %s", name, conn, o, v1beta1.ReasonUnauthorized)
			}
			if o.Requeue != unauthorizedRecheck || o.Result().RequeueAfter != unauthorizedRecheck {
				t.Errorf("%s over %s: requeue %v (result %+v), want a look again after %v", name, conn, o.Requeue, o.Result(), unauthorizedRecheck)
			}
		}
	}
}
