package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// sandboxTunnel is the tunnel of the sandbox and what the operator needs to
// reach the remotes through it.
type sandboxTunnel struct {
	*tunnel.Local
	// tunnelCA issues the tunnel's certificates; only it is trusted for the
	// tunnel, never the mesh root.
	tunnelCA *ca.KeyPair
	// tokenFile holds istiod's token, as its pod would have it.
	tokenFile string
}

// startTunnel runs the tunnel server in the sandbox: its certificate and
// the agents' are the tunnel CA's (the operator's, in
// meshfleet-system/meshfleet-tunnel-ca); callers present client
// certificates of the primary's CA (the operator) or tokens the primary
// accepts (istiod).
func (s *Sandbox) startTunnel(tunnelCA *ca.KeyPair) (*sandboxTunnel, error) {
	kube, err := kubernetes.NewForConfig(s.Primary().Config)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(s.Dir, "tunnel.log"))
	if err != nil {
		return nil, err
	}
	l, err := tunnel.StartLocal(tunnel.LocalOptions{Root: tunnelCA, ClientCAPEM: s.Primary().CACertPEM,
		TokenReviews: kube.AuthenticationV1().TokenReviews(), Logger: slog.New(slog.NewJSONHandler(f, nil))})
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, l.Stop)
	return &sandboxTunnel{Local: l, tunnelCA: tunnelCA, tokenFile: filepath.Join(s.Dir, "istiod", "token")}, nil
}

// operatorTunnel is the operator's view of the tunnel.
func (t *sandboxTunnel) operatorTunnel() *remoteistio.Tunnel {
	return &remoteistio.Tunnel{URL: t.APIURL, CAData: t.tunnelCA.CertPEM, IstiodTokenFile: t.tokenFile}
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
// service account where the remote secrets say istiod reads it, as the
// kubelet would project it into istiod's pod.
func writeIstiodToken(ctx context.Context, s *Sandbox, t *sandboxTunnel, namespace string) error {
	kube, err := kubernetes.NewForConfig(s.Primary().Config)
	if err != nil {
		return err
	}
	secs := int64((24 * time.Hour).Seconds())
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, "istiod",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for %s/istiod: %w", namespace, err)
	}
	if err := os.MkdirAll(filepath.Dir(t.tokenFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(t.tokenFile, []byte(tr.Status.Token), 0o600)
}
