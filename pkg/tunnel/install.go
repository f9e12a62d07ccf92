package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/manifests"
)

// Where manifests/tunnel/agent.yaml puts the agent.
const (
	AgentNamespace      = "meshfleet-system"
	AgentServiceAccount = "meshfleet-tunnel-agent"
)

// agentRBACKinds are the kinds of manifests/tunnel/agent.yaml that
// InstallAgentRBAC creates; the Deployment is left out.
var agentRBACKinds = map[string]schema.GroupVersionResource{
	"Namespace":          {Version: "v1", Resource: "namespaces"},
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
}

// AgentRBAC returns the agent manifest's namespace, service account and
// RBAC (the agent's impersonation rights and the bindings of the tunnelled
// operator and locality server), as installed in every tunnelled cluster.
func AgentRBAC() ([]*unstructured.Unstructured, error) {
	b, err := manifests.Tunnel.ReadFile("tunnel/agent.yaml")
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("manifests/tunnel/agent.yaml: %w", err)
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, ok := agentRBACKinds[u.GetKind()]; ok {
			out = append(out, u)
		}
	}
}

// InstallAgentRBAC creates AgentRBAC in a cluster with admin credentials
// (what applying the agent manifest there does) and returns the agent's
// upstream configuration: the same API server with a token of the agent's
// service account, valid for ttlSeconds.
func InstallAgentRBAC(ctx context.Context, admin *rest.Config, ttlSeconds int64) (*rest.Config, error) {
	objs, err := AgentRBAC()
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		gvr := agentRBACKinds[o.GetKind()]
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if o.GetNamespace() != "" {
			ri = dyn.Resource(gvr).Namespace(o.GetNamespace())
		}
		if _, err := ri.Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create %s %s from the agent manifest: %w", o.GetKind(), o.GetName(), err)
		}
	}
	kube, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	tr, err := kube.CoreV1().ServiceAccounts(AgentNamespace).CreateToken(ctx, AgentServiceAccount,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &ttlSeconds}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for the agent's service account %s/%s: %w", AgentNamespace, AgentServiceAccount, err)
	}
	up := rest.AnonymousClientConfig(admin)
	up.BearerToken = tr.Status.Token
	return up, nil
}
