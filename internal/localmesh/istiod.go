package localmesh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// startIstiod starts istiod with the MeshConfig of the ConfigMap the
// operator rendered (istiod reads meshNetworks from the same ConfigMap
// itself, as in a cluster) and registers it as the component "istiod". With
// the tunnel, istiod reads the tunnelled remotes with its own token, from
// the file the remote secrets name, as its pod would.
func (m *Mesh) startIstiod(ctx context.Context) error {
	ns, primary := m.Namespace(), m.Primary()
	var env []string
	if m.ha != nil || m.Tunnel != nil {
		if err := WriteIstiodToken(ctx, m.Kube[primary.Name], ns, m.istiodTokenFile()); err != nil {
			return err
		}
		e, note, err := IstiodTunnelEnv(ctx, m.C[primary.Name], ns)
		if err != nil {
			return err
		}
		env, m.IstiodNote = append(env, e...), note
		if note != "" {
			m.say("  NOTE: %s", note)
		}
	}
	env = append(env, m.Options.IstiodEnv...)
	mesh := &corev1.ConfigMap{}
	if err := m.C[primary.Name].Get(ctx, client.ObjectKey{Namespace: ns, Name: "istio"}, mesh); err != nil {
		return fmt.Errorf("reading the MeshConfig the operator rendered (ConfigMap %s/istio): %w", ns, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: primary.Kubeconfig,
		Dir:        filepath.Join(m.Dir, "istiod"),
		MeshConfig: mesh.Data["mesh"],
		ClusterID:  m.Options.Istio.Spec.ClusterName,
		Namespace:  ns,
		Env:        env,
	})
	if err != nil {
		return err
	}
	m.Istiod = d
	m.comps.add(&component{name: ComponentIstiod, kill: d.Kill, start: d.Restart,
		detail: func() string { return "xDS " + d.GRPCAddr }})
	return nil
}

func (m *Mesh) istiodTokenFile() string   { return filepath.Join(m.Dir, "istiod", "token") }
func (m *Mesh) operatorTokenFile() string { return filepath.Join(m.Dir, "operator", "token") }

// tokenTTL is how long the tokens written for istiod and the operator last.
const tokenTTL = 24 * time.Hour

// WriteIstiodToken writes a token of the primary's <namespace>/istiod
// service account (created if missing) for the tunnel's audience to file,
// as the kubelet projects it into istiod's pod (the volume the operator
// renders).
func WriteIstiodToken(ctx context.Context, kube kubernetes.Interface, namespace, file string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: namespace}}
	if _, err := kube.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ServiceAccount %s/istiod: %w", namespace, err)
	}
	secs := int64(tokenTTL.Seconds())
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, "istiod",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs, Audiences: []string{tunnel.TokenAudience}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("TokenRequest for %s/istiod: %w", namespace, err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(tr.Status.Token), 0o600)
}

// insecureKubeconfigOptions is istiod's switch that lets remote secrets use
// a tokenFile (pkg/kube.sanitizeKubeConfig refuses it otherwise).
const insecureKubeconfigOptions = "PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS"

// IstiodTunnelEnv is the extra environment of an out-of-cluster istiod:
// what the rendered istiod Deployment (in namespace of the primary c) says
// about tokenFile in remote secrets. Real istiod refuses a remote secret
// with a tokenFile unless PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS
// allows it; if the rendered Deployment does not, it is set anyway, as the
// remote secrets written for tunnelled clusters need it, and note says so.
func IstiodTunnelEnv(ctx context.Context, c client.Client, namespace string) (env []string, note string, err error) {
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "istiod"}, d); err != nil {
		return nil, "", fmt.Errorf("reading the rendered istiod Deployment %s/istiod: %w", namespace, err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == insecureKubeconfigOptions {
				return []string{e.Name + "=" + e.Value}, "", nil
			}
		}
	}
	note = fmt.Sprintf("the rendered istiod Deployment does not set %s=tokenFile, without which istiod refuses the tunnel's remote secrets (\"tokenFile is not allowed\"); it is set here", insecureKubeconfigOptions)
	return []string{insecureKubeconfigOptions + "=tokenFile"}, note, nil
}
