package render

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// readerClusterRolePrefix starts the name of Istio's reader ClusterRole
// (istio-reader-clusterrole[-<revision>]-<namespace>).
const readerClusterRolePrefix = "istio-reader-clusterrole-"

// primaryReaderWithoutSecrets takes Secrets out of Istio's reader
// ClusterRole in the primary. The reader role is how other clusters' istiods
// read a cluster (its Secrets for credentialName); in the primary nothing
// reads through it, and cluster-wide Secret access there would reach the
// mesh's root and tunnel CA keys (meshfleet-system). Remotes keep it: the
// primary's istiod reads their gateways' Secrets through it.
func primaryReaderWithoutSecrets(cp *ControlPlane, m *Manifest) error {
	if cp.Remote != nil {
		return nil
	}
	for _, o := range m.Objects {
		if o.GetKind() != "ClusterRole" || !strings.HasPrefix(o.GetName(), readerClusterRolePrefix) {
			continue
		}
		rules, _, err := unstructured.NestedSlice(o.Object, "rules")
		if err != nil {
			return fmt.Errorf("ClusterRole %s: %w", o.GetName(), err)
		}
		for _, r := range rules {
			rule, ok := r.(map[string]any)
			if !ok {
				continue
			}
			resources, _ := rule["resources"].([]any)
			rule["resources"] = slices.DeleteFunc(slices.Clone(resources), func(v any) bool { return v == "secrets" })
		}
		if err := unstructured.SetNestedSlice(o.Object, rules, "rules"); err != nil {
			return fmt.Errorf("ClusterRole %s: %w", o.GetName(), err)
		}
	}
	return nil
}
