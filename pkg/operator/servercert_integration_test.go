//go:build integration

package operator_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestTunnelServerCertificate: with --tunnel-server-hosts the operator keeps
// the tunnel server's certificate from the tunnel CA, so that installing the
// server needs no CA key outside meshfleet-system; it leaves the
// installer's client-ca.crt alone, a real tunnel server serves with it, and
// a certificate due for renewal is replaced.
func TestTunnelServerCertificate(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "primary"})
	ctx := t.Context()
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Cluster("primary").Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, c, crds); err != nil {
		t.Fatal(err)
	}
	// The installer's part of the Secret: the CA of callers' client certificates.
	key := client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.ServerTLSSecretName}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: meshca.Namespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string][]byte{"client-ca.crt": env.Cluster("primary").CACertPEM}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	hosts := []string{"127.0.0.1", "meshfleet-tunnel.meshfleet-system.svc"}
	framework.StartOperator(t, env.Cluster("primary").Config, operator.Options{MetricsAddr: "0", HealthAddr: "0", Resync: 2 * time.Second, TunnelServerHosts: hosts})

	s := &corev1.Secret{}
	eventually(t, "the tunnel server certificate", func() error {
		if err := c.Get(ctx, key, s); err != nil {
			return err
		}
		if len(s.Data["tls.crt"]) == 0 {
			return fmt.Errorf("no tls.crt yet")
		}
		return nil
	})
	if !bytes.Equal(s.Data["client-ca.crt"], env.Cluster("primary").CACertPEM) {
		t.Errorf("client-ca.crt changed")
	}
	tunnelCA := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.TunnelCASecretName}, tunnelCA); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Data["ca.crt"], tunnelCA.Data[meshca.RootCertKey]) {
		t.Errorf("ca.crt is not the tunnel CA")
	}

	// A real tunnel server with it; a client trusting the tunnel CA only.
	cert, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.Data["ca.crt"])
	agentCAs, err := tunnel.CABundleFromPEM(s.Data["ca.crt"])
	if err != nil {
		t.Fatal(err)
	}
	clientCAs, err := tunnel.CABundleFromPEM(s.Data["client-ca.crt"])
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tunnel.NewServer(tunnel.ServerOptions{ServingCertificate: tunnel.StaticKeyPair(cert), AgentCAs: agentCAs, ClientCAs: clientCAs,
		Clusters: tunnel.NewClusterSet(), PingInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	apiLn, _ := net.Listen("tcp", "127.0.0.1:0")
	agentLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ctx, apiLn, agentLn) }()
	conn, err := tls.Dial("tcp", agentLn.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS to the tunnel server with the operator's certificate, trusting the tunnel CA: %v", err)
	}
	conn.Close()

	// A certificate due for renewal is replaced.
	issuer, err := ca.ParseKeyPair(tunnelCA.Data[meshca.RootCertKey], tunnelCA.Data[meshca.RootKeyKey], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	due, err := tunnel.IssueServerCertificate(issuer, hosts, tunnel.CertificateOptions{TTL: 20 * time.Second, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["tls.crt"], s.Data["tls.key"] = due.CertPEM, due.KeyPEM
	if err := c.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the due tunnel server certificate renewed", func() error {
		if err := c.Get(ctx, key, s); err != nil {
			return err
		}
		if bytes.Equal(s.Data["tls.crt"], due.CertPEM) {
			return fmt.Errorf("not renewed yet")
		}
		return nil
	})
	leaf := leafOf(t, s.Data["tls.crt"])
	if left := time.Until(leaf.NotAfter); left < meshca.ServerCertTTL-time.Hour {
		t.Errorf("renewed server certificate expires in %v, want about %v", left, meshca.ServerCertTTL)
	}
	if !bytes.Equal(s.Data["client-ca.crt"], env.Cluster("primary").CACertPEM) {
		t.Errorf("client-ca.crt changed by the renewal")
	}
}
