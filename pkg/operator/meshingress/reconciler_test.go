package meshingress

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ingress"
	"github.com/meshfleet/meshfleet/pkg/render"
)

func TestUnstructured(t *testing.T) {
	mi := &v1beta1.MeshIngress{}
	mi.Name, mi.Namespace = "shop", "istio-system"
	mi.Spec = v1beta1.MeshIngressSpec{Hosts: []string{"shop.example.com"}, GatewayClusters: []string{"c1"},
		Routes: []v1beta1.IngressRoute{{Name: "shop", Service: v1beta1.IngressService{Name: "echo", Namespace: "default", Port: 80},
			Weights: []v1beta1.ClusterWeight{{Cluster: "c1", Weight: 100}}}}}
	objs, err := ingress.Render(mi, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	us, err := Unstructured(objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 3 || us[0].GetKind() != "Gateway" || us[2].GetKind() != "DestinationRule" || us[2].GetNamespace() != "istio-gateways" {
		t.Fatalf("objects: %v", us)
	}
	subsets, _, _ := unstructured.NestedSlice(us[2].Object, "spec", "subsets")
	fp, _, _ := unstructured.NestedStringSlice(subsets[0].(map[string]any), "trafficPolicy", "loadBalancer", "localityLbSetting", "failoverPriority")
	if len(fp) != 1 || fp[0] != "topology.istio.io/cluster=c1" {
		t.Fatalf("subset: %v", subsets[0])
	}
	od, _, _ := unstructured.NestedMap(us[2].Object, "spec", "trafficPolicy", "outlierDetection")
	if od["interval"] != "2s" {
		t.Fatalf("outlier detection: %v", od)
	}
	w, _, _ := unstructured.NestedSlice(us[1].Object, "spec", "http")
	if len(w) != 1 {
		t.Fatalf("http: %v", w)
	}
}

// fakeAPI is the controller over fake API servers: the cached client (the
// MeshIngress and the mesh's resources) and the direct one (the gateways'
// namespace and the rendered objects). It counts status writes.
type fakeAPI struct {
	r            *Reconciler
	statusWrites int
	listErr      error
}

func newFakeAPI(t *testing.T, mi *v1beta1.MeshIngress, direct ...client.Object) *fakeAPI {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1beta1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	f := &fakeAPI{}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(mi).WithStatusSubresource(mi).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				f.statusWrites++
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if f.listErr != nil {
					return f.listErr
				}
				return c.List(ctx, list, opts...)
			},
		}).Build()
	f.r = &Reconciler{Client: c, Direct: fake.NewClientBuilder().WithScheme(s).WithObjects(direct...).Build(), Resync: time.Hour}
	return f
}

func (f *fakeAPI) reconcile(t *testing.T, mi *v1beta1.MeshIngress) (ctrl.Result, *v1beta1.MeshIngress, error) {
	t.Helper()
	res, err := f.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(mi)})
	got := &v1beta1.MeshIngress{}
	if gerr := f.r.Client.Get(t.Context(), client.ObjectKeyFromObject(mi), got); gerr != nil && !apierrors.IsNotFound(gerr) {
		t.Fatal(gerr)
	}
	return res, got, err
}

func meshIngress(clusters ...string) *v1beta1.MeshIngress {
	return &v1beta1.MeshIngress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "shop", Generation: 2, UID: "shop-uid"},
		Spec: v1beta1.MeshIngressSpec{Hosts: []string{"shop.example.com"}, GatewayClusters: clusters,
			Routes: []v1beta1.IngressRoute{{Name: "shop", Service: v1beta1.IngressService{Name: "echo", Namespace: "default", Port: 80},
				Weights: []v1beta1.ClusterWeight{{Cluster: "c1", Weight: 100}}}}},
	}
}

func TestReconcileNoEntryCluster(t *testing.T) {
	mi := meshIngress() // no gateway cluster, and no cluster in the mesh
	f := newFakeAPI(t, mi)
	res, got, err := f.reconcile(t, mi)
	if err != nil || res != (ctrl.Result{}) {
		t.Fatalf("reconcile: %+v, %v; want no error and no retry (the user must act)", res, err)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1beta1.ReasonInvalidSpec || !strings.Contains(c.Message, "spec.gatewayClusters") {
		t.Errorf("Ready = %+v, want False/InvalidSpec naming spec.gatewayClusters", c)
	}
	if got.Status.ObservedGeneration != 2 || len(got.Finalizers) != 1 || got.Finalizers[0] != Finalizer {
		t.Errorf("observed generation %d, finalizers %v", got.Status.ObservedGeneration, got.Finalizers)
	}
	if _, _, err := f.reconcile(t, mi); err != nil {
		t.Fatal(err)
	}
	if f.statusWrites != 1 {
		t.Errorf("%d status writes, want 1: the second reconcile found nothing new", f.statusWrites)
	}
}

func TestReconcileWaitsForGatewayNamespace(t *testing.T) {
	mi := meshIngress("c1")
	f := newFakeAPI(t, mi) // no istio-gateways namespace
	res, got, err := f.reconcile(t, mi)
	if err != nil || res.RequeueAfter != 10*time.Second {
		t.Fatalf("reconcile: %+v, %v; want a look again in 10s", res, err)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, ConditionReady); c == nil || c.Reason != v1beta1.ReasonNoControlPlane || !strings.Contains(c.Message, render.GatewayNamespace) {
		t.Errorf("Ready = %+v, want NoControlPlane naming %s", c, render.GatewayNamespace)
	}
}

func TestReconcileTransientErrorKeepsStatus(t *testing.T) {
	mi := meshIngress("c1")
	f := newFakeAPI(t, mi)
	f.listErr = apierrors.NewServiceUnavailable("cache not synced")
	if _, _, err := f.reconcile(t, mi); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("error %v, want the list's", err)
	}
	if f.statusWrites != 0 {
		t.Errorf("%d status writes: a reconcile that got nowhere marked generation observed", f.statusWrites)
	}
}

func TestReconcileDeletion(t *testing.T) {
	mi := meshIngress("c1")
	mi.Finalizers = []string{Finalizer}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: render.GatewayNamespace}}
	f := newFakeAPI(t, mi, ns)
	if err := f.r.Client.Delete(t.Context(), mi); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.reconcile(t, mi); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Client.Get(t.Context(), client.ObjectKeyFromObject(mi), &v1beta1.MeshIngress{}); !apierrors.IsNotFound(err) {
		t.Errorf("MeshIngress after its objects were deleted: %v, want it gone", err)
	}
}
