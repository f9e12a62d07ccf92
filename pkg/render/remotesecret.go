package render

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
)

// Labels and annotations istiod reads on remote secrets.
const (
	LabelMultiCluster     = "istio/multiCluster"
	AnnotationClusterName = "networking.istio.io/cluster"
)

// RemoteAccess is how the primary's istiod reaches a remote API server.
type RemoteAccess struct {
	// Server is the API server URL: the remote's own, or its tunnel URL.
	Server string
	// CAData verifies Server's certificate.
	CAData []byte
	// Token authenticates istiod to Server (a token of the remote's
	// istio-reader service account); or
	Token string
	// TokenFile names a file holding istiod's own token, for servers that
	// authenticate callers of the primary (the tunnel).
	TokenFile string
}

// Consumer is a component of the primary that reads remote clusters from
// kubeconfig Secrets it finds by label: istiod, and Kiali.
type Consumer struct {
	// Name is the component's name, for messages.
	Name string
	// SecretPrefix, Label and ClusterAnnotation shape the Secret.
	SecretPrefix, Label, ClusterAnnotation string
	// ServiceAccount in the remote whose token a direct connection's Secret
	// holds; ChartServiceAccount when Istio's chart creates it.
	ServiceAccount      string
	ChartServiceAccount bool
	// Identity is the component's service account in the primary's
	// namespace: through the tunnel it is impersonated under that name,
	// mapped (TunnelUser).
	Identity string
	// ClusterRoles it is bound to in the remote (%s is the namespace).
	ClusterRoles []string
	// OwnRules, if any, make a ClusterRole of the consumer's own in the
	// remote (OwnRoleName), bound like ClusterRoles.
	OwnRules []any
}

// OwnRoleName names the consumer's own ClusterRole in a remote.
func (c Consumer) OwnRoleName() string { return "meshfleet-" + strings.ToLower(c.Name) }

// kialiIstioConfigRules let Kiali read Istio's configuration and the
// Gateway API, which the aggregated "view" role does not cover. Istio's
// reader role would, but it also reads every Secret of the remote
// (cacerts holds the remote's intermediate CA key), which Kiali never needs.
var kialiIstioConfigRules = []any{
	map[string]any{
		"apiGroups": []any{"networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io",
			"gateway.networking.k8s.io", "gateway.networking.x-k8s.io"},
		"resources": []any{"*"},
		"verbs":     []any{"get", "list", "watch"},
	},
	map[string]any{
		"apiGroups": []any{"admissionregistration.k8s.io"},
		"resources": []any{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
		"verbs":     []any{"get", "list", "watch"},
	},
}

// The consumers of remote clusters.
var (
	// Istiod discovers the remote's services, endpoints and nodes.
	Istiod = Consumer{Name: "istiod", SecretPrefix: "istio-remote-secret-", Label: LabelMultiCluster,
		ClusterAnnotation: AnnotationClusterName, ServiceAccount: "istio-reader-service-account", ChartServiceAccount: true,
		Identity: "istiod", ClusterRoles: []string{"istio-reader-clusterrole-%s"}}
	// Kiali shows the remote in its multi-cluster graph.
	Kiali = Consumer{Name: "Kiali", SecretPrefix: "kiali-remote-cluster-secret-", Label: "kiali.io/multiCluster",
		ClusterAnnotation: "kiali.io/cluster", ServiceAccount: "kiali-remote",
		Identity: "kiali", ClusterRoles: []string{"view"}, OwnRules: kialiIstioConfigRules}
)

// SecretName is the name of the consumer's Secret for a cluster.
func (c Consumer) SecretName(cluster string) string { return c.SecretPrefix + cluster }

// RemoteSecretName is the name of istiod's remote secret of a cluster.
func RemoteSecretName(cluster string) string { return Istiod.SecretName(cluster) }

// RemoteSecret renders istiod's remote secret of a cluster.
func RemoteSecret(remote *ControlPlane, access RemoteAccess) (*unstructured.Unstructured, error) {
	return Istiod.Secret(remote, access)
}

// Secret renders the consumer's kubeconfig Secret for a remote cluster (for
// istiod, what `istioctl create-remote-secret` writes): one key, the cluster
// name, holding a kubeconfig.
func (c Consumer) Secret(remote *ControlPlane, access RemoteAccess) (*unstructured.Unstructured, error) {
	name := remote.ClusterName
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: access.Server, CertificateAuthorityData: access.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: access.Token, TokenFile: access.TokenFile}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("%s secret for cluster %s: %w", c.Name, name, err)
	}
	labels := OwnerLabels(remote.Owner)
	labels[c.Label] = "true"
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        c.SecretName(name),
			Namespace:   remote.Remote.Primary.Namespace,
			Labels:      labels,
			Annotations: map[string]string{c.ClusterAnnotation: name},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{name: b},
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		return nil, err
	}
	obj := &unstructured.Unstructured{Object: u}
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	return obj, nil
}

// TunnelUser is the name the tunnel impersonates the consumer under in a
// remote: its primary service account, under the tunnel's prefix, so that
// no primary identity is ever one of the remote's own.
func (c Consumer) TunnelUser(primaryNamespace string) string {
	return mapping.User(mapping.DefaultPrefix, mapping.ServiceAccountUser(primaryNamespace, c.Identity))
}

// RemoteRBAC renders what the consumer needs in the remote: through the
// tunnel, bindings of its roles to its primary identity (impersonated);
// directly, its service account and bindings (unless Istio's chart has them).
func (c Consumer) RemoteRBAC(remote *ControlPlane, tunnel bool) []*unstructured.Unstructured {
	var subject map[string]any
	var out []*unstructured.Unstructured
	switch {
	case tunnel:
		subject = map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
			"name": c.TunnelUser(remote.Remote.Primary.Namespace)}
	case c.ChartServiceAccount:
		return nil
	default:
		sa := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ServiceAccount",
			"metadata": map[string]any{"name": c.ServiceAccount, "namespace": remote.Namespace}}}
		sa.SetLabels(OwnerLabels(remote.Owner))
		out = append(out, sa)
		subject = map[string]any{"kind": "ServiceAccount", "name": c.ServiceAccount, "namespace": remote.Namespace}
	}
	roles := c.ClusterRoles
	if len(c.OwnRules) > 0 {
		own := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1",
			"kind":       "ClusterRole",
			"metadata":   map[string]any{"name": c.OwnRoleName()},
			"rules":      c.OwnRules,
		}}
		own.SetLabels(OwnerLabels(remote.Owner))
		out = append(out, own)
		roles = append(slices.Clone(roles), c.OwnRoleName())
	}
	for _, role := range roles {
		if strings.Contains(role, "%s") {
			role = fmt.Sprintf(role, remote.Namespace)
		}
		b := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1",
			"kind":       "ClusterRoleBinding",
			"metadata":   map[string]any{"name": fmt.Sprintf("meshfleet-%s-%s", strings.ToLower(c.Name), role)},
			"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
			"subjects":   []any{subject},
		}}
		b.SetLabels(OwnerLabels(remote.Owner))
		out = append(out, b)
	}
	return out
}
