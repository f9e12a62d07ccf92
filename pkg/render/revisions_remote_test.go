package render

import (
	"fmt"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// twoRevisions is an upgrade in flight: 1.30.3 installed, 1.31.0 beside it
// with the default tag already moved to it.
var twoRevisions = []InstalledRevision{{Name: "1-30-3", Version: "1.30.3"}, {Name: "1-31-0", Version: "1.31.0", Tags: []string{DefaultTag}}}

// TestRemoteRevisions: a remote of a revision-based control plane gets, per
// revision, a webhook that calls istiod-<rev> on the remote injection path
// and the Service istiod-<rev> that leads to the primary; the default tag's
// webhook calls the tag's revision. No istiod runs in the remote.
func TestRemoteRevisions(t *testing.T) {
	for _, tc := range []struct {
		in       string
		endpoint string // the address istiod-<rev> leads to
	}{
		{"testdata/remote-gateway-connected.in.yaml", "externalName=eastwest.primary.example.com"},
		{"testdata/remote-sample.in.yaml", "endpointslice=203.0.113.10"},
	} {
		t.Run(filepath.Base(tc.in), func(t *testing.T) {
			cp := readControlPlane(t, tc.in)
			if cp.Remote.PilotAddress == "" {
				cp.Remote.PilotAddress = "203.0.113.10"
			}
			m, err := RenderRevisions(cp, twoRevisions)
			if err != nil {
				t.Fatal(err)
			}
			by := map[string]*unstructured.Unstructured{}
			for _, o := range m.Objects {
				by[o.GetKind()+"/"+o.GetName()] = o
				if o.GetKind() == "Deployment" && o.GetNamespace() == cp.Namespace {
					t.Errorf("Deployment %s rendered in the remote's control-plane namespace", o.GetName())
				}
			}
			path := fmt.Sprintf("/inject/cluster/%s/net/%s", cp.ClusterName, cp.Network)
			for hook, svc := range map[string]string{
				"istio-sidecar-injector-1-30-3": "istiod-1-30-3",
				"istio-sidecar-injector-1-31-0": "istiod-1-31-0",
				"istio-revision-tag-default":    "istiod-1-31-0",
			} {
				h := by["MutatingWebhookConfiguration/"+hook]
				if h == nil {
					t.Errorf("no webhook %s rendered", hook)
					continue
				}
				hooks, _, _ := unstructured.NestedSlice(h.Object, "webhooks")
				for _, w := range hooks {
					cc := w.(map[string]any)["clientConfig"].(map[string]any)
					s, _, _ := unstructured.NestedString(cc, "service", "name")
					p, _, _ := unstructured.NestedString(cc, "service", "path")
					if s != svc || p != path {
						t.Errorf("webhook %s calls service %s path %s, want %s path %s", hook, s, p, svc, path)
					}
				}
			}
			if by["MutatingWebhookConfiguration/istio-sidecar-injector"] != nil {
				t.Error("an unrevisioned injection webhook rendered in the remote")
			}
			for _, rev := range []string{"1-30-3", "1-31-0"} {
				svc := by["Service/istiod-"+rev]
				if svc == nil {
					t.Errorf("no Service istiod-%s in the remote", rev)
					continue
				}
				if sel, _, _ := unstructured.NestedMap(svc.Object, "spec", "selector"); len(sel) > 0 {
					t.Errorf("Service istiod-%s selects %v in the remote, where no istiod runs", rev, sel)
				}
				got := ""
				if n, _, _ := unstructured.NestedString(svc.Object, "spec", "externalName"); n != "" {
					got = "externalName=" + n
				} else if es := by["EndpointSlice/istiod-"+rev]; es != nil {
					eps, _, _ := unstructured.NestedSlice(es.Object, "endpoints")
					addrs, _, _ := unstructured.NestedStringSlice(eps[0].(map[string]any), "addresses")
					got = fmt.Sprintf("endpointslice=%s", addrs[0])
				}
				if got != tc.endpoint {
					t.Errorf("Service istiod-%s leads to %q, want %q", rev, got, tc.endpoint)
				}
			}
			// The tag's Service leads to the primary as well (its SNI
			// reaches the primary's tag Service through the gateway).
			tag := by["Service/"+TagServiceName(DefaultTag)]
			if tag == nil {
				t.Fatal("no default tag Service in the remote")
			}
			if sel, _, _ := unstructured.NestedMap(tag.Object, "spec", "selector"); len(sel) > 0 {
				t.Errorf("the default tag's Service selects %v in the remote, where no istiod runs", sel)
			}
			n, _, _ := unstructured.NestedString(tag.Object, "spec", "externalName")
			es := by["EndpointSlice/"+TagServiceName(DefaultTag)]
			if n == "" && (es == nil || es.GetLabels()["kubernetes.io/service-name"] != TagServiceName(DefaultTag)) {
				t.Errorf("the default tag's Service in the remote leads nowhere")
			}
		})
	}
}

// TestRevisionsGolden renders the primary and a remote in the middle of an
// upgrade (two revisions, the default tag on the newer) and compares them
// with testdata/revisions/*.out.yaml.
func TestRevisionsGolden(t *testing.T) {
	for name, in := range map[string]string{
		"primary-gateway-connected": "testdata/gateway-connected.in.yaml",
		"remote-gateway-connected":  "testdata/remote-gateway-connected.in.yaml",
	} {
		t.Run(name, func(t *testing.T) {
			cp := readControlPlane(t, in)
			m, err := RenderRevisions(cp, twoRevisions)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "revisions", name+".out.yaml"), manifestYAML(t, m))
		})
	}
}
