package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// sandboxTunnel is the tunnel of the sandbox and what the operator needs to
// reach the remotes through it.
type sandboxTunnel struct {
	*tunnel.Local
	root *ca.KeyPair
	// tokenFile holds istiod's token, as its pod would have it.
	tokenFile string
	// opTokenFile holds the operator's token for the tunnel's audience.
	opTokenFile string
}

// meshRoot creates the mesh's root CA in the primary before the operator
// would, so that the tunnel's certificates chain to it.
func meshRoot(ctx context.Context, c client.Client, namespace string) (*ca.KeyPair, error) {
	root, err := ca.NewRoot(ca.RootOptions{TTL: render.DefaultRootTTL, Now: time.Now(), CommonName: "meshfleet sandbox root CA"})
	if err != nil {
		return nil, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: meshca.RootSecretName, Namespace: namespace,
			Labels: map[string]string{render.LabelManagedBy: render.ManagedByValue, meshca.LabelRole: "root-ca"}},
		Data: map[string][]byte{meshca.RootCertKey: root.CertPEM, meshca.RootKeyKey: root.KeyPEM},
	}
	if err := c.Create(ctx, s); err != nil {
		return nil, fmt.Errorf("create the mesh root: %w", err)
	}
	return root, nil
}

// startTunnel runs the tunnel server in the sandbox: agents present
// certificates of the mesh root and need a RemoteIstio; callers (istiod,
// the operator) present tokens the primary issued for the tunnel's
// audience. It writes the operator's token.
func (s *Sandbox) startTunnel(ctx context.Context, root *ca.KeyPair) (*sandboxTunnel, error) {
	f, err := os.Create(filepath.Join(s.Dir, "tunnel.log"))
	if err != nil {
		return nil, err
	}
	l, err := tunnel.StartLocal(tunnel.LocalOptions{Root: root, ClientCAPEM: s.Primary().CACertPEM,
		Primary: s.Primary().Config, Logger: slog.New(slog.NewJSONHandler(f, nil))})
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, l.Stop)
	t := &sandboxTunnel{Local: l, root: root, tokenFile: filepath.Join(s.Dir, "istiod", "token"),
		opTokenFile: filepath.Join(s.Dir, "operator", "token")}
	if err := tunnel.WriteServiceAccountToken(ctx, s.Primary().Config, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", t.opTokenFile, 24*time.Hour); err != nil {
		return nil, err
	}
	return t, nil
}

// operatorTunnel is the operator's view of the tunnel.
func (t *sandboxTunnel) operatorTunnel() *remoteistio.Tunnel {
	return &remoteistio.Tunnel{URL: t.APIURL, CAData: t.root.CertPEM, IstiodTokenFile: t.tokenFile, TokenFile: t.opTokenFile}
}

// startAgent runs the agent of one remote, as `meshctl cluster join --tunnel`
// would have it installed there.
func (s *Sandbox) startAgent(t *sandboxTunnel, cluster string) error {
	for _, c := range s.Clusters {
		if c.Name == cluster {
			_, err := t.StartAgent(cluster, c.Config)
			return err
		}
	}
	return fmt.Errorf("no cluster %s", cluster)
}

// writeIstiodToken writes a token of the primary's istio-system/istiod
// service account, for the tunnel's audience, where the remote secrets say istiod reads it, as the
// kubelet would project it into istiod's pod.
func writeIstiodToken(ctx context.Context, s *Sandbox, t *sandboxTunnel, namespace string) error {
	kube, err := kubernetes.NewForConfig(s.Primary().Config)
	if err != nil {
		return err
	}
	secs := int64((24 * time.Hour).Seconds())
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, "istiod",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs, Audiences: []string{tunnel.TokenAudience}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for %s/istiod: %w", namespace, err)
	}
	if err := os.MkdirAll(filepath.Dir(t.tokenFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(t.tokenFile, []byte(tr.Status.Token), 0o600)
}
