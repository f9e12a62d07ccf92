//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework"
)

// checkTunnelled checks a Tunnel mesh's remotes are joined through the
// tunnel with no credential of a remote in the primary: the RemoteIstios'
// connection, the remote secrets (the tunnel's URL, istiod's token file),
// the tunnel's audit of istiod's and the operator's requests (each as
// itself, by token), and istiod's own log.
func checkTunnelled(t *testing.T, m *framework.Mesh) {
	ctx := t.Context()
	tokenFile, apiURL, tunnelCA := m.Tunnel.IstiodTokenFile, m.Tunnel.APIURL, m.Tunnel.CA

	for _, r := range mcRemotes {
		ri := &v1beta1.RemoteIstio{}
		if err := m.C[mcPrimary].Get(ctx, client.ObjectKey{Namespace: mcNS, Name: r}, ri); err != nil {
			t.Fatal(err)
		}
		if ri.Status.Connection != v1beta1.ConnectionTunnel {
			t.Errorf("RemoteIstio %s: connection %q, want %q", r, ri.Status.Connection, v1beta1.ConnectionTunnel)
		}
		s := &corev1.Secret{}
		if err := m.C[mcPrimary].Get(ctx, client.ObjectKey{Namespace: mcNS, Name: render.RemoteSecretName(r)}, s); err != nil {
			t.Fatalf("remote secret of %s: %v", r, err)
		}
		kc, err := clientcmd.Load(s.Data[r])
		if err != nil {
			t.Fatalf("remote secret of %s: %v", r, err)
		}
		c, a := kc.Clusters[r], kc.AuthInfos[r]
		if c == nil || c.Server != apiURL+"/clusters/"+r || !bytes.Equal(c.CertificateAuthorityData, tunnelCA.CertPEM) {
			t.Errorf("remote secret of %s: cluster %+v, want server %s/clusters/%s verified by the mesh root", r, c, apiURL, r)
		}
		if a == nil || a.Token != "" || a.TokenFile != tokenFile || len(a.ClientCertificateData) != 0 {
			t.Errorf("remote secret of %s: credentials %+v, want only istiod's token file %s", r, a, tokenFile)
		}
		t.Logf("RemoteIstio %s: connection %s; remote secret: server %s, tokenFile %s", r, ri.Status.Connection, c.Server, a.TokenFile)
	}
	// istiod and the operator reached the remotes through the tunnel, as
	// themselves: istiod by its token (TokenReview against the primary),
	// the operator by its own token (TokenReview against the primary).
	istiod, op := m.Tunnel.ProxiedBy(t, istiodUser, "token"), m.Tunnel.ProxiedBy(t, opUser, "token")
	for _, r := range mcRemotes {
		if ok2xx(istiod[r]) == 0 {
			t.Errorf("no successful request of %s (token) to %s through the tunnel: %v", istiodUser, r, istiod[r])
		}
		if ok2xx(op[r]) == 0 {
			t.Errorf("no successful request of the operator (%s, token) to %s through the tunnel: %v", opUser, r, op[r])
		}
	}
	t.Logf("tunnel audit, requests by status code: istiod %v; operator %v", istiod, op)
	for _, r := range mcRemotes {
		for _, a := range m.Tunnel.Agents(r) {
			t.Logf("agent %s of %s: served %d requests, RTT %v", a.ID, a.Cluster, a.Served, a.RTT)
		}
	}
	// istiod's own account of it: each remote's registry synced.
	raw, err := os.ReadFile(m.Istiod.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(raw)
	for _, r := range mcRemotes {
		want := fmt.Sprintf("kube controller for %s synced", r)
		if !strings.Contains(log, want) {
			t.Errorf("istiod's log %s has no %q", m.Istiod.LogPath, want)
		}
	}
}

func ok2xx(codes map[int]int) int {
	n := 0
	for c, k := range codes {
		if c >= 200 && c < 300 {
			n += k
		}
	}
	return n
}
