// Package mapping turns the identity of a primary-cluster caller into the
// identity the tunnel impersonates in a remote cluster.
//
// A remote cluster must never take a primary identity at face value: a
// primary cluster-admin (group system:masters) is not an admin of every
// remote, and a primary node (system:nodes) is no node there. So every user
// name and group is put under a prefix (DefaultPrefix, "meshfleet:"), which
// no Kubernetes authenticator produces, and remote RBAC binds the prefixed
// names. The only group passed as is, system:authenticated, is not sent at
// all: the remote API server adds it to every impersonated user itself.
// UIDs and extra fields are dropped; they name objects of the primary.
//
// The package is pure and has no dependencies, so that the renderer can
// name the same subjects in the RoleBindings it writes.
package mapping

import "strings"

// DefaultPrefix is the prefix of every impersonated user and group name.
const DefaultPrefix = "meshfleet:"

// allAuthenticated is the group every authenticated user has.
const allAuthenticated = "system:authenticated"

// Identity is a user name and groups: a caller in the primary, or the
// identity impersonated in a remote.
type Identity struct {
	User   string
	Groups []string
}

// Map returns the identity impersonated in a remote for a primary caller.
// The user and every group are prefixed; system:authenticated and
// system:unauthenticated are dropped (the remote adds the first to every
// impersonated user; the second never reaches the tunnel).
func Map(prefix string, caller Identity) Identity {
	out := Identity{User: User(prefix, caller.User)}
	for _, g := range caller.Groups {
		if g == allAuthenticated || g == "system:unauthenticated" || g == "" {
			continue
		}
		out.Groups = append(out.Groups, prefix+g)
	}
	return out
}

// User returns the impersonated name of the primary user name.
func User(prefix, user string) string { return prefix + user }

// ServiceAccountUser is the primary user name of a service account.
func ServiceAccountUser(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// ServiceAccountGroups are the groups, beyond system:authenticated, that
// the primary gives every token of a service account in namespace.
func ServiceAccountGroups(namespace string) []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace}
}

// Safe reports whether an impersonated name is one Map can produce with
// prefix: it starts with the prefix (and so with no "system:").
func Safe(prefix, name string) bool {
	return prefix != "" && !strings.HasPrefix(prefix, "system:") && strings.HasPrefix(name, prefix)
}
