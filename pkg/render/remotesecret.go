package render

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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

// RemoteSecretName is the name of the remote secret of a cluster.
func RemoteSecretName(cluster string) string { return "istio-remote-secret-" + cluster }

// RemoteSecret renders the Secret from which the primary's istiod discovers
// the services, endpoints and nodes of a remote cluster (what `istioctl
// create-remote-secret` writes): label istio/multiCluster=true, one key, the
// cluster name, holding a kubeconfig.
func RemoteSecret(remote *ControlPlane, access RemoteAccess) (*unstructured.Unstructured, error) {
	name := remote.ClusterName
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: access.Server, CertificateAuthorityData: access.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: access.Token, TokenFile: access.TokenFile}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("remote secret for cluster %s: %w", name, err)
	}
	labels := OwnerLabels(remote.Owner)
	labels[LabelMultiCluster] = "true"
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        RemoteSecretName(name),
			Namespace:   remote.Remote.Primary.Namespace,
			Labels:      labels,
			Annotations: map[string]string{AnnotationClusterName: name},
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

// ReaderBinding binds Istio's reader ClusterRole of a remote cluster to user,
// the identity under which istiod reads the remote (through the tunnel, the
// primary's istiod service account, impersonated).
func ReaderBinding(remote *ControlPlane, user string) *unstructured.Unstructured {
	role := "istio-reader-clusterrole-" + remote.Namespace
	b := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1",
		"kind":       "ClusterRoleBinding",
		"metadata":   map[string]any{"name": role + "-tunnel"},
		"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
		"subjects":   []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}},
	}}
	b.SetLabels(OwnerLabels(remote.Owner))
	return b
}
