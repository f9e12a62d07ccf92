package istio

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// The cache lists RemoteIstios in no set order. Two reconciles that list the
// same members in different orders must give the same ControlPlane (the
// render's input, which render.Memo keys on, and meshNetworks) and the same
// status.members (else each writes the status again).
func TestMembersDoNotFollowListOrder(t *testing.T) {
	var objs []client.Object
	for _, name := range []string{"west", "east", "north", "south", "centre", "far"} {
		objs = append(objs, &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"},
			Spec:   v1beta1.RemoteIstioSpec{ClusterName: name, Network: "net-" + name},
			Status: v1beta1.RemoteIstioStatus{Phase: v1beta1.PhaseReady, Connection: v1beta1.ConnectionDirect}})
	}
	reverse := false
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).Build(), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if err := c.List(ctx, list, opts...); err != nil {
				return err
			}
			if l, ok := list.(*v1beta1.RemoteIstioList); ok && reverse {
				slices.Reverse(l.Items)
			}
			return nil
		},
	})
	r := &Reconciler{Client: c}
	members := func() ([]render.Member, []v1beta1.MemberStatus) {
		t.Helper()
		ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
			Spec: v1beta1.IstioSpec{Version: "1.30.3", ClusterName: "primary", Network: "net-primary",
				MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterGatewayConnected}}}
		cp, errs := render.FromIstio(ist)
		if len(errs) > 0 {
			t.Fatal(errs.ToAggregate())
		}
		if _, err := r.members(t.Context(), ist, cp); err != nil {
			t.Fatal(err)
		}
		return cp.Members, ist.Status.Members
	}
	cp1, st1 := members()
	reverse = true
	cp2, st2 := members()
	if len(cp1) != len(objs) {
		t.Fatalf("%d members, want %d: %v", len(cp1), len(objs), cp1)
	}
	if !reflect.DeepEqual(cp1, cp2) {
		t.Errorf("the ControlPlane's members follow the list's order:\n%v\n%v", cp1, cp2)
	}
	if !reflect.DeepEqual(st1, st2) {
		t.Errorf("status.members follows the list's order:\n%v\n%v", names(st1), names(st2))
	}
}

func names(ms []v1beta1.MemberStatus) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return fmt.Sprint(out)
}
