// Package remoteistio is the RemoteIstio controller: it connects to a remote
// cluster (through a kubeconfig Secret with inline credentials, or through the
// tunnel), issues its intermediate CA and tunnel agent certificate, installs
// Istio's remote profile there and the remote secret in the primary, keeps
// the last known conditions while the cluster is unreachable, and removes
// what it installed when the cluster leaves.
package remoteistio
