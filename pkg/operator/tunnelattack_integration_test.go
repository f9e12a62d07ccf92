//go:build integration

package operator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// tunnelAttacks: the admin of remote1 holds remote1's intermediate key
// (cacerts). With it they try to pose as the tunnel server to remote3's
// agent and to istiod/the operator, and as remote3's agent to the server.
// Each attempt runs against the real agent, server and client-go, with the
// trust material meshfleet hands out (the agent's ca.crt, istiod's remote
// secret), and must be refused.
func (h *remoteHarness) tunnelAttacks(t *testing.T) {
	cacerts := &corev1.Secret{}
	h.get("remote1", ns, meshca.CACertsSecretName, cacerts)
	stolen, _, err := ca.ParsePluginCerts(cacerts.Data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	issued := &corev1.Secret{}
	h.get("primary", meshca.Namespace, meshca.AgentSecretName("remote3"), issued)

	t.Run("a server certificate from a remote's intermediate: the agent refuses it", func(t *testing.T) {
		rogue := h.rogueServer(t, stolen)
		err := h.agentError(t, "remote3", issued.Data[corev1.TLSCertKey], issued.Data[corev1.TLSPrivateKeyKey], issued.Data[meshca.TunnelCAKey], rogue.url)
		if !isCertError(err) {
			t.Fatalf("agent error %v, want a certificate verification error", err)
		}
		if got := <-rogue.handshakes; got == nil {
			t.Fatal("the agent completed a TLS handshake with the rogue server")
		} else {
			t.Logf("agent refused the rogue server: %v (server saw: %v)", err, got)
		}
	})
	t.Run("a server certificate from a remote's intermediate: istiod's and the operator's tunnel client refuses it", func(t *testing.T) {
		rogue := h.rogueServer(t, stolen)
		s := &corev1.Secret{}
		h.get("primary", ns, render.RemoteSecretName("remote3"), s)
		kc, err := clientcmd.Load(s.Data["remote3"])
		if err != nil {
			t.Fatal(err)
		}
		kc.Clusters["remote3"].Server = rogue.url + "/clusters/remote3"
		kc.AuthInfos["remote3"] = &clientcmdapi.AuthInfo{Token: "token"}
		cfg, err := clientcmd.NewDefaultClientConfig(*kc, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Timeout = 10 * time.Second
		_, err = kubernetes.NewForConfigOrDie(cfg).Discovery().ServerVersion()
		if !isCertError(err) {
			t.Fatalf("client error %v, want a certificate verification error", err)
		}
		t.Logf("istiod's tunnel client refused the rogue server: %v", err)
	})
	for _, c := range []struct{ name, cluster string }{
		{"another cluster's name (remote3)", "remote3"},
		{"its own cluster's name (remote1)", "remote1"},
	} {
		t.Run("an agent certificate from a remote's intermediate for "+c.name+": the server refuses it", func(t *testing.T) {
			forged := forgeAgentCert(t, stolen, c.cluster)
			err := h.agentError(t, c.cluster, forged.CertPEM, forged.KeyPEM, h.tunnelCA.CertPEM, h.tunnel.AgentURL)
			if err == nil {
				t.Fatal("the forged agent connected")
			}
			for _, a := range h.tunnel.Agents(c.cluster) {
				if strings.HasPrefix(a.ID, "forged-") {
					t.Fatalf("the server lists the forged agent %s for %s", a.ID, c.cluster)
				}
			}
			t.Logf("server refused the forged agent: %v", err)
			// A client that presents the certificate whatever CAs the
			// server asks for (the agent does not): the handshake fails.
			pair, err := tls.X509KeyPair(forged.CertPEM, forged.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(h.tunnelCA.Cert)
			conn, err := tls.Dial("tcp", strings.TrimPrefix(h.tunnel.AgentURL, "https://"), &tls.Config{RootCAs: roots,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }})
			if err == nil {
				// TLS 1.3: the client learns of the server's refusal on its first read.
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if !isCertError(err) {
				t.Fatalf("forced presentation of the forged certificate: %v, want the server to refuse it", err)
			}
			t.Logf("server refused the forced forged certificate: %v", err)
		})
	}
}

// rogue is a TLS server posing as the tunnel server.
type rogue struct {
	url string
	// handshakes receives each handshake's outcome (nil: it completed).
	handshakes chan error
}

// rogueServer listens on loopback with a certificate for 127.0.0.1 signed
// by issuer, and reports each TLS handshake.
func (h *remoteHarness) rogueServer(t *testing.T, issuer *ca.KeyPair) *rogue {
	t.Helper()
	leaf, err := tunnel.IssueServerCertificate(issuer, []string{"127.0.0.1"}, tunnel.CertificateOptions{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &rogue{url: "https://" + ln.Addr().String(), handshakes: make(chan error, 100)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, NextProtos: []string{"http/1.1"}})
			err = tc.HandshakeContext(h.ctx)
			select {
			case r.handshakes <- err:
			default:
			}
			conn.Close()
		}
	}()
	return r
}

// agentError runs a real tunnel agent of cluster with the given
// certificate, key and server CA against server, and returns the error of
// its first failed connection (nil if it connected).
func (h *remoteHarness) agentError(t *testing.T, cluster string, certPEM, keyPEM, serverCA []byte, server string) error {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := tunnel.CABundleFromPEM(serverCA)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tunnel.NewAgent(tunnel.AgentOptions{Cluster: cluster, ID: "forged-" + cluster, Servers: []string{server},
		Certificate: tunnel.StaticKeyPair(cert), ServerCAs: roots, Upstream: h.env.Cluster("remote1").Config,
		BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var result error
	eventually(t, "the agent's first connection attempt", func() error {
		st := a.Status()
		switch {
		case st.LastError != nil:
			result = st.LastError
			return nil
		case st.Connected:
			result = nil
			return nil
		}
		return errors.New("no attempt yet")
	})
	return result
}

// isCertError reports whether err is a failed certificate verification.
func isCertError(err error) bool {
	if err == nil {
		return false
	}
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &verify) ||
		strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls: bad certificate") || strings.Contains(err.Error(), "tls: unknown certificate authority")
}

// forgeAgentCert signs an agent certificate for cluster with issuer, as
// the holder of issuer's key would, past tunnel.IssueAgentCertificate's own
// refusal to issue for another cluster.
func forgeAgentCert(t *testing.T, issuer *ca.KeyPair, cluster string) *tunnel.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{OrganizationalUnit: []string{cluster}, CommonName: "meshfleet tunnel agent"},
		URIs:         []*url.URL{tunnel.AgentIdentityURI(cluster)},
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &tunnel.Certificate{
		CertPEM: append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), issuer.CertPEM...),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}
