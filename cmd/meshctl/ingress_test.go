package main

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ingress"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshingress"
)

// TestIngressWeights: shiftWeights writes a valid split and refuses one
// that does not add up, leaving the stored weights alone; appliedLine
// tells whether the operator has applied the latest generation.
func TestIngressWeights(t *testing.T) {
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	mi := &v1beta1.MeshIngress{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "istio-system", Generation: 1},
		Spec: v1beta1.MeshIngressSpec{Hosts: []string{"shop.example.com"}, Routes: []v1beta1.IngressRoute{{
			Name: "shop", Service: v1beta1.IngressService{Name: "echo", Namespace: "default", Port: 80},
			Weights: []v1beta1.ClusterWeight{{Cluster: "c1", Weight: 80}, {Cluster: "c2", Weight: 20}}}}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(mi).Build()
	ctx := t.Context()
	key := client.ObjectKeyFromObject(mi)

	w, _ := ingress.ParseWeights("c1=50,c2=50")
	got, err := shiftWeights(ctx, c, key, "", w)
	if err != nil {
		t.Fatal(err)
	}
	if d := ingress.Describe(got); !strings.Contains(d, "c1 50%, c2 50%") {
		t.Fatalf("describe:\n%s", d)
	}
	bad, _ := ingress.ParseWeights("c1=50,c2=40")
	if _, err := shiftWeights(ctx, c, key, "", bad); err == nil || !strings.Contains(err.Error(), "spec.routes[0].weights") {
		t.Fatalf("bad weights: %v", err)
	}
	stored := &v1beta1.MeshIngress{}
	if err := c.Get(ctx, key, stored); err != nil {
		t.Fatal(err)
	}
	if stored.Spec.Routes[0].Weights[1].Weight != 50 {
		t.Fatalf("stored weights %v", stored.Spec.Routes[0].Weights)
	}
	if l := appliedLine(stored); !strings.Contains(l, "not yet") {
		t.Fatalf("applied: %s", l)
	}
	meta.SetStatusCondition(&stored.Status.Conditions, metav1.Condition{Type: meshingress.ConditionReady, Status: metav1.ConditionTrue,
		Reason: "Applied", Message: "3 objects applied in istio-gateways", ObservedGeneration: stored.Generation})
	if l := appliedLine(stored); l != "yes, 3 objects applied in istio-gateways" {
		t.Fatalf("applied: %s", l)
	}
}
