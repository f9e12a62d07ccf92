package install

import (
	"bytes"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/manifests"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// AgentSecretName is the agent's own certificate Secret in its cluster
// (namespace render.TunnelServerNamespace), which the operator renews
// through the tunnel.
const AgentSecretName = "meshfleet-tunnel-agent-tls"

// TunnelAgent returns what runs the tunnel agent of cluster in that
// cluster: manifests/tunnel/agent.yaml (namespace, service account, the
// impersonation RBAC limited by resourceNames, the bindings of the
// tunnelled operator and locality server, a Deployment of two agents) for
// cluster and the server address agents dial (host:port), with image, and
// the agent's certificate Secret (tls.crt, tls.key, ca.crt as the operator
// issued them). The same objects are printed (air-gapped clusters) or
// applied (meshctl cluster join --tunnel with the remote's kubeconfig).
func TunnelAgent(cluster, server, image string, tlsData map[string][]byte) ([]*unstructured.Unstructured, error) {
	if cluster == "" || server == "" || image == "" {
		return nil, fmt.Errorf("the tunnel agent needs its cluster name (%q), the server's host:port (%q) and an image (%q)", cluster, server, image)
	}
	raw, err := manifests.Tunnel.ReadFile("tunnel/agent.yaml")
	if err != nil {
		return nil, err
	}
	text := strings.NewReplacer("CLUSTER_NAME", cluster, "TUNNEL_SERVER:443", server).Replace(string(raw))
	objs, err := decodeAll(bytes.NewReader([]byte(text)))
	if err != nil {
		return nil, fmt.Errorf("manifests/tunnel/agent.yaml: %w", err)
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: AgentSecretName, Namespace: render.TunnelServerNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       tlsData,
	}
	s, err := ToUnstructured(secret, secret.TypeMeta)
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(objs)+1)
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetName() == render.TunnelAgentName {
			if err := setContainerImage(o, render.TunnelAgentContainer, image); err != nil {
				return nil, err
			}
		}
		out = append(out, o)
		if o.GetKind() == "Namespace" {
			out = append(out, s) // right after its namespace
		}
	}
	return out, nil
}

// setContainerImage sets the image of the named container of a Deployment.
func setContainerImage(dep *unstructured.Unstructured, container, image string) error {
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	found := false
	for i := range containers {
		if c, ok := containers[i].(map[string]any); ok && c["name"] == container {
			c["image"], found = image, true
		}
	}
	if !found {
		return fmt.Errorf("the Deployment %s has no container %q", dep.GetName(), container)
	}
	return unstructured.SetNestedSlice(dep.Object, containers, "spec", "template", "spec", "containers")
}
