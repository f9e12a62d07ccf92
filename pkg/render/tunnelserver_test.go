package render

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/pkg/version"
)

// TestTunnelServerGolden renders the tunnel server the operator runs when
// the mesh uses the tunnel (testdata/tunnel-server.out.yaml).
func TestTunnelServerGolden(t *testing.T) {
	cp := &ControlPlane{Namespace: "istio-system", Owner: Owner{Kind: "Istio", Name: "istio", Namespace: "istio-system"},
		TunnelServer: &TunnelServer{Image: "registry.example.com/meshfleet/meshfleet:v1.2.3"}}
	m := &Manifest{}
	if err := renderTunnelServer(cp, m); err != nil {
		t.Fatal(err)
	}
	if err := labelOwned(cp, m); err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "tunnel-server.out.yaml"), manifestYAML(t, m))
}

// TestTunnelServerOnlyWhenAsked: no tunnel server without the operator's
// tunnel settings, nor in a remote cluster; the image defaults to meshfleet's.
func TestTunnelServerOnlyWhenAsked(t *testing.T) {
	for _, cp := range []*ControlPlane{
		{Namespace: "istio-system"},
		{Namespace: "istio-system", Remote: &Remote{}, TunnelServer: &TunnelServer{}},
	} {
		m := &Manifest{}
		if err := renderTunnelServer(cp, m); err != nil || len(m.Objects) > 0 {
			t.Errorf("remote %v, tunnel server %v: rendered %d objects (%v), want none", cp.Remote != nil, cp.TunnelServer != nil, len(m.Objects), err)
		}
	}
	objs := tunnelServerObjects(&ControlPlane{Namespace: "mesh", TunnelServer: &TunnelServer{}})
	i := slices.IndexFunc(objs, func(o runtime.Object) bool { _, ok := o.(*appsv1.Deployment); return ok })
	dep := objs[i].(*appsv1.Deployment)
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != version.Image() {
		t.Errorf("image %q, want the default %q", c.Image, version.Image())
	}
	if !slices.Contains(c.Args, "--istio-namespace=mesh") || !slices.Contains(c.Args, "--leader-elect=true") {
		t.Errorf("args %s: want the control plane's namespace and the Lease", strings.Join(c.Args, " "))
	}
	if TunnelRoleLabel != tunnel.RoleLabel || TunnelServerTLSSecretName == "" {
		t.Errorf("the Services select %q, the server labels its pod %q", TunnelRoleLabel, tunnel.RoleLabel)
	}
	if *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *dep.Spec.Replicas)
	}
}
