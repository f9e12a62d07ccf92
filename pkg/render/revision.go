package render

import "strings"

// RevisionName is the istiod revision that installs Istio version v: the
// version with dots as dashes (1.30.3 -> 1-30-3), a DNS label as Istio's
// istio.io/rev and the names derived from it need.
func RevisionName(v string) string {
	return strings.ToLower(strings.NewReplacer(".", "-", "+", "-", "_", "-").Replace(v))
}

// IstiodName is the name of istiod's Deployment and Service: istiod, or
// istiod-<revision> for a revisioned control plane.
func IstiodName(cp *ControlPlane) string {
	if cp.Revision == "" {
		return "istiod"
	}
	return "istiod-" + cp.Revision
}
