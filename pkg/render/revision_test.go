package render

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestRevisionName(t *testing.T) {
	for v, want := range map[string]string{"1.30.3": "1-30-3", "1.31.0-rc.0": "1-31-0-rc-0"} {
		if got := RevisionName(v); got != want {
			t.Errorf("RevisionName(%s) = %s, want %s", v, got, want)
		}
	}
}

// TestRevisionedRender: a revisioned control plane names istiod, its
// injector ConfigMap and webhook after the revision, and meshfleet's own
// edits (tunnel token, plain-text xDS) still find istiod.
func TestRevisionedRender(t *testing.T) {
	cp := readControlPlane(t, "testdata/gateway-connected.in.yaml")
	cp.Revision = RevisionName(cp.Version)
	cp.RevisionTags = []string{"default"}
	cp.ClosePlaintextXDS = true
	m, err := Render(cp)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*unstructured.Unstructured{}
	for _, o := range m.Objects {
		byName[o.GetKind()+"/"+o.GetName()] = o
	}
	for _, k := range []string{"Deployment/istiod-1-30-3", "Service/istiod-1-30-3", "ConfigMap/istio-sidecar-injector-1-30-3", "ConfigMap/istio-1-30-3", "MutatingWebhookConfiguration/istio-sidecar-injector-1-30-3",
		"MutatingWebhookConfiguration/istio-revision-tag-default", "Service/istiod-revision-tag-default"} {
		if byName[k] == nil {
			t.Errorf("no %s rendered", k)
		}
	}
	if byName["Deployment/istiod"] != nil {
		t.Error("an unrevisioned istiod rendered beside the revision")
	}
	if d := byName["Deployment/istiod-1-30-3"]; d != nil {
		vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
		found := false
		for _, v := range vols {
			if v.(map[string]any)["name"] == tunnelTokenVolume {
				found = true
			}
		}
		if !found {
			t.Error("tunnel token not mounted into the revisioned istiod")
		}
	}
	for _, name := range []string{"Service/istiod-1-30-3", "Service/istiod-revision-tag-default"} {
		s := byName[name]
		if s == nil {
			continue
		}
		ports, _, _ := unstructured.NestedSlice(s.Object, "spec", "ports")
		for _, p := range ports {
			if fmt.Sprint(p.(map[string]any)["port"]) == "15010" {
				t.Errorf("plain-text xDS port 15010 left on %s", name)
			}
		}
	}
	for _, name := range []string{"MutatingWebhookConfiguration/istio-sidecar-injector-1-30-3", "MutatingWebhookConfiguration/istio-revision-tag-default"} {
		h := byName[name]
		if h == nil {
			continue
		}
		hooks, _, _ := unstructured.NestedSlice(h.Object, "webhooks")
		for _, w := range hooks {
			path, _, _ := unstructured.NestedString(w.(map[string]any), "clientConfig", "service", "name")
			if path != "istiod-1-30-3" {
				t.Errorf("webhook %v calls service %q", w.(map[string]any)["name"], path)
			}
		}
	}
}
