package tunnel

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
)

// Namespaces and service accounts of the primary's components that use the
// tunnel by default (DefaultAccessPolicy).
const (
	DefaultIstioNamespace     = "istio-system"
	DefaultMeshfleetNamespace = "meshfleet-system"
)

// AccessRule lets callers of the primary use the tunnel: one user name or
// one group, to the listed clusters (every cluster if none is listed).
type AccessRule struct {
	User     string   `json:"user,omitempty"`
	Group    string   `json:"group,omitempty"`
	Clusters []string `json:"clusters,omitempty"`
}

// AccessPolicy is the tunnel's authorization: which authenticated callers
// may use it, to which clusters, and the prefix their user and groups are
// impersonated under in the remote (package mapping). Everyone else gets
// 403, as kube-apiserver's authorizer would answer.
type AccessPolicy struct {
	// Prefix starts every impersonated user and group name;
	// mapping.DefaultPrefix if empty. It must not start with "system:".
	Prefix string `json:"prefix,omitempty"`
	// Allow lists who may use the tunnel.
	Allow []AccessRule `json:"allow"`
}

// DefaultAccessPolicy allows the primary's components that read or manage
// remote clusters through the tunnel: istiod, Kiali and the locality server
// (in istioNamespace, where the operator renders it) and the meshfleet
// operator (in meshfleetNamespace).
func DefaultAccessPolicy(istioNamespace, meshfleetNamespace string) AccessPolicy {
	return AccessPolicy{Prefix: mapping.DefaultPrefix, Allow: []AccessRule{
		{User: mapping.ServiceAccountUser(istioNamespace, "istiod")},
		{User: mapping.ServiceAccountUser(istioNamespace, "kiali")},
		{User: mapping.ServiceAccountUser(meshfleetNamespace, "meshfleet-operator")},
		{User: mapping.ServiceAccountUser(istioNamespace, "meshfleet-locality")},
	}}
}

// ParseAccessPolicy reads a policy from YAML or JSON, refusing unknown
// fields, and validates it.
func ParseAccessPolicy(b []byte) (AccessPolicy, error) {
	var p AccessPolicy
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return AccessPolicy{}, fmt.Errorf("tunnel access policy: %w", err)
	}
	if p.Prefix == "" {
		p.Prefix = mapping.DefaultPrefix
	}
	if err := p.Validate(); err != nil {
		return AccessPolicy{}, err
	}
	return p, nil
}

// Validate checks the prefix and that every rule names exactly one user or
// group and valid cluster names.
func (p AccessPolicy) Validate() error {
	var errs []error
	if p.Prefix == "" || strings.HasPrefix(p.Prefix, "system:") {
		errs = append(errs, fmt.Errorf("tunnel access policy: prefix %q must be set and must not start with \"system:\" (impersonated names under it would be Kubernetes system identities); use e.g. %q", p.Prefix, mapping.DefaultPrefix))
	}
	for i, r := range p.Allow {
		if (r.User == "") == (r.Group == "") {
			errs = append(errs, fmt.Errorf("tunnel access policy: allow[%d]: give exactly one of user or group (got user %q, group %q)", i, r.User, r.Group))
		}
		for j, c := range r.Clusters {
			if err := validateClusterName(c); err != nil {
				errs = append(errs, fmt.Errorf("tunnel access policy: allow[%d].clusters[%d]: %w", i, j, err))
			}
		}
	}
	return errors.Join(errs...)
}

// allows reports whether the caller may reach cluster.
func (p AccessPolicy) allows(id *Identity, cluster string) bool {
	for _, r := range p.Allow {
		if len(r.Clusters) > 0 && !slices.Contains(r.Clusters, cluster) {
			continue
		}
		if (r.User != "" && r.User == id.User) || (r.Group != "" && slices.Contains(id.Groups, r.Group)) {
			return true
		}
	}
	return false
}

// impersonated returns the identity the tunnel impersonates for id.
func (p AccessPolicy) impersonated(id *Identity) mapping.Identity {
	return mapping.Map(p.Prefix, mapping.Identity{User: id.User, Groups: id.Groups})
}

// deniedMessage tells a refused caller how to be allowed.
func (p AccessPolicy) deniedMessage(id *Identity, cluster string) string {
	return fmt.Sprintf("user %q may not use the tunnel to cluster %q: only the identities of the tunnel server's access policy may; "+
		"to allow it, add {user: %q, clusters: [%s]} to the policy's allow list, and bind its impersonated name %q in that cluster",
		id.User, cluster, id.User, cluster, mapping.User(p.Prefix, id.User))
}
