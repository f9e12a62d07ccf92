package render

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The token istiod presents to the meshfleet tunnel: a projected
// service-account token for the tunnel's own audience (the tunnel refuses
// tokens for the API server's audience, so a token stolen from any pod does
// not open it). Remote secrets of tunnelled clusters name TunnelTokenPath.
const (
	// TunnelTokenAudience must equal tunnel.TokenAudience.
	TunnelTokenAudience = "meshfleet-tunnel"
	// TunnelTokenPath is where istiod's container reads the token.
	TunnelTokenPath = tunnelTokenDir + "/token"

	tunnelTokenDir    = "/var/run/secrets/meshfleet.io/tunnel"
	tunnelTokenVolume = "meshfleet-tunnel-token"
	tunnelTokenTTL    = int64(3600)
)

// mountTunnelToken adds the projected tunnel token to istiod's Deployment
// when the mesh spans clusters (any of them may be tunnelled).
func mountTunnelToken(cp *ControlPlane, m *Manifest) error {
	if cp.Remote != nil || cp.Mode == "none" {
		return nil
	}
	for _, o := range m.Objects {
		if o.GetKind() != "Deployment" || o.GetName() != IstiodName(cp) {
			continue
		}
		if err := addProjectedToken(o, "discovery"); err != nil {
			return fmt.Errorf("deployment %s: %w", IstiodName(cp), err)
		}
	}
	return nil
}

func addProjectedToken(o *unstructured.Unstructured, container string) error {
	spec, _, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if err != nil {
		return err
	}
	volumes, _ := spec["volumes"].([]any)
	spec["volumes"] = append(volumes, map[string]any{
		"name": tunnelTokenVolume,
		"projected": map[string]any{"sources": []any{map[string]any{"serviceAccountToken": map[string]any{
			"audience": TunnelTokenAudience, "expirationSeconds": tunnelTokenTTL, "path": "token",
		}}}},
	})
	containers, _ := spec["containers"].([]any)
	found := false
	for _, c := range containers {
		cm, ok := c.(map[string]any)
		if !ok || cm["name"] != container {
			continue
		}
		mounts, _ := cm["volumeMounts"].([]any)
		cm["volumeMounts"] = append(mounts, map[string]any{"name": tunnelTokenVolume, "mountPath": tunnelTokenDir, "readOnly": true})
		found = true
	}
	if !found {
		return fmt.Errorf("no container %q", container)
	}
	return unstructured.SetNestedMap(o.Object, spec, "spec", "template", "spec")
}
