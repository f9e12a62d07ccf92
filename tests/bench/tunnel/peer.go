//go:build integration

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/tests/bench/tunnel/internal/remotedialer"
)

// peer is rancher/remotedialer set up the way Rancher uses it: the agent
// dials a WebSocket (over TLS) to the server; a TLS-terminating reverse
// proxy in front of the server sends each caller's request through the
// tunnel to the backend, with the agent's credentials.
//
// The bench has two such fronts to the API server. One presents the
// remote's own credentials and nothing else: remotedialer as a bare byte
// pipe. The other ("remotedialer, impersonating") also sends the
// Impersonate-User and -Group headers meshfleet's agent sends for the same
// caller, with the same credentials, so the API server does the same work
// for both and the difference is the tunnel's. That is how Rancher itself
// uses remotedialer (rancher/rancher 59bd052e, August 2026):
// pkg/auth/requests/filter.go sets Impersonate-User and Impersonate-Group
// (and Impersonate-Extra-*) to the authenticated Rancher user on every
// request that is not a service account's; pkg/clusterrouter/proxy/
// proxy_server.go then replaces Authorization with the token of a
// per-user service account, cattle-impersonation-<user id> in namespace
// cattle-impersonation-system of the downstream cluster, whose ClusterRole
// (pkg/impersonation/impersonation.go, rulesForUser) may impersonate only
// that user, its groups and extras, and sends the request over a Transport
// whose DialContext is the cluster's remotedialer dialer. Rancher's
// credential is a service account token, the bench's the admin client
// certificate meshfleet's agent also uses: the API server's cost of
// authenticating either is the same on both paths.
type peer struct {
	server *remotedialer.Server
	ws     *httptest.Server
	stops  []func()
}

func newPeer(ctx context.Context) (*peer, error) {
	logrus.SetLevel(logrus.WarnLevel)
	p := &peer{server: remotedialer.New(func(r *http.Request) (string, bool, error) {
		return r.Header.Get("X-Tunnel-ID"), true, nil
	}, remotedialer.DefaultErrorWriter)}
	p.ws = httptest.NewTLSServer(p.server)
	p.stops = append(p.stops, p.ws.Close)
	return p, nil
}

// front connects an agent named key and returns the caller configuration of
// a reverse proxy that reaches upstream through it.
func (p *peer) front(key string, upstream *rest.Config) (*rest.Config, error) {
	ctx, cancel := context.WithCancel(context.Background())
	roots := x509.NewCertPool()
	roots.AddCert(p.ws.Certificate())
	dialer := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots}, HandshakeTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_ = remotedialer.ClientConnect(ctx, "wss"+strings.TrimPrefix(p.ws.URL, "https")+"/connect",
				http.Header{"X-Tunnel-ID": {key}}, dialer, func(string, string) bool { return true }, nil)
		}
	}()
	p.stops = append(p.stops, func() { cancel(); <-done })
	for deadline := time.Now().Add(30 * time.Second); !p.server.HasSession(key); {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("remotedialer agent %s did not connect", key)
		}
		time.Sleep(time.Millisecond)
	}

	through := rest.CopyConfig(upstream)
	through.Dial = p.server.Dialer(key)
	// HTTP/2 over a remotedialer connection loses the connection under a
	// bulk stream; Rancher proxies HTTP/1.1 through it.
	through.NextProtos = []string{"http/1.1"}
	rt, err := rest.TransportFor(through)
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(upstream.Host)
	if err != nil {
		return nil, err
	}
	front := httptest.NewUnstartedServer(&httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Header.Del("Authorization") },
		Transport: rt,
		// The default: streaming responses (no Content-Length) are
		// flushed at once, others when the body is copied.
		FlushInterval: 0,
	})
	front.StartTLS()
	p.stops = append(p.stops, front.Close)
	return &rest.Config{Host: front.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}),
		NextProtos: []string{"http/1.1"},
	}}, nil
}

func (p *peer) close() {
	for i := len(p.stops) - 1; i >= 0; i-- {
		p.stops[i]()
	}
}
