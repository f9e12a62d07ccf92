package istio

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// Istio's CRDs are skipped only while the manifest (its Memo generation)
// and every live CRD (UID and resourceVersion) are as last recorded: an
// edit, a deletion, a re-creation or a new manifest checks them in full.
func TestCRDCheckSkipsOnlyWhatDidNotChange(t *testing.T) {
	crd := func(name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		u.SetName(name)
		return u
	}
	desired := []*unstructured.Unstructured{crd("gateways.networking.istio.io"), crd("sidecars.networking.istio.io")}
	c := fake.NewClientBuilder().Build()
	for i, d := range desired {
		live := d.DeepCopy()
		live.SetUID(types.UID([]string{"uid-a", "uid-b"}[i]))
		if err := c.Create(t.Context(), live); err != nil {
			t.Fatal(err)
		}
	}
	versions := func() map[string]string {
		out := map[string]string{}
		for _, d := range desired {
			live := d.DeepCopy()
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(d), live); err != nil {
				t.Fatal(err)
			}
			out[d.GetName()] = liveVersion(live)
		}
		return out
	}
	const owner, gen = types.UID("istio-uid"), uint64(7)
	var check crdCheck
	unchanged := func(g uint64) bool { return check.unchanged(t.Context(), c, owner, g, desired) }

	if unchanged(gen) {
		t.Fatal("nothing recorded yet, but the CRDs were skipped")
	}
	check.record(owner, gen, versions())
	if !unchanged(gen) {
		t.Fatal("the same manifest and the same CRDs were checked again")
	}
	if unchanged(gen + 1) {
		t.Error("a new manifest skipped the CRDs")
	}
	if check.unchanged(t.Context(), c, "other-istio", gen, desired) {
		t.Error("another Istio resource skipped the CRDs recorded for this one")
	}

	edited := desired[1].DeepCopy()
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(edited), edited); err != nil {
		t.Fatal(err)
	}
	edited.SetLabels(map[string]string{"edited": "by a user"})
	if err := c.Update(t.Context(), edited); err != nil {
		t.Fatal(err)
	}
	if unchanged(gen) {
		t.Error("an edited CRD was skipped")
	}
	check.record(owner, gen, versions())
	if !unchanged(gen) {
		t.Fatal("the CRDs recorded after the edit were checked again")
	}

	if err := c.Delete(t.Context(), desired[0].DeepCopy()); err != nil {
		t.Fatal(err)
	}
	if unchanged(gen) {
		t.Error("a deleted CRD was skipped")
	}
}
