//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// TestMulticlusterTunnel joins two remote clusters that are reachable only
// through the tunnel: no kubeconfig of a remote exists in the primary. The
// operator reaches them through the tunnel server with its own credentials
// (its service-account token for the tunnel's audience), and the real istiod through the
// remote secrets the operator writes (server = <tunnel>/clusters/<name>,
// istiod's own service-account token, authenticated by TokenReview against
// the primary and impersonated in the remote). A real proxyless gRPC client
// in the primary must get both remotes' endpoints and complete RPCs to them.
// Deleting a RemoteIstio takes its endpoints away; losing a cluster's agent
// keeps istiod's last known endpoints and turns Connected False.
func TestMulticlusterTunnel(t *testing.T) {
	testStart := time.Now()
	m := startTunnelMesh(t, v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary,
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
	})
	m.createEcho()
	nodeID := "sidecar~" + mcClientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(m.istiod.GRPCAddr, nodeID, mcPrimary, "r1", "z1"))
	addr1, addr2 := tnEchoRemote1.String(), tnEchoRemote2.String()

	// The operator joins remote1, then remote2, through the tunnel.
	var joins []time.Duration
	for _, r := range mcRemotes {
		t0 := time.Now()
		m.createRemoteIstio(r)
		at, err := firstRPCTo(m.ctx, cc, tnWorkloads[r].addr.String(), 60*time.Second)
		if err != nil {
			t.Fatalf("joining %s through the tunnel: %v", r, err)
		}
		joins = append(joins, at.Sub(t0))
		t.Logf("RemoteIstio %s created → first RPC in %s (through the tunnel): %v", r, r, at.Sub(t0).Round(time.Millisecond))
	}
	t.Logf("BENCH join through the tunnel (RemoteIstio created → first RPC answered in the new cluster):\n"+
		"  %-52s %10s\n  %-52s %10v\n  %-52s %10v",
		"flow", "time",
		"meshfleet tunnel: RemoteIstio remote1 (first remote)", joins[0].Round(time.Millisecond),
		"meshfleet tunnel: RemoteIstio remote2 (second remote)", joins[1].Round(time.Millisecond))

	for _, r := range mcRemotes {
		m.waitRemote(r, v1beta1.ConditionReady, 60*time.Second)
	}

	ok := t.Run("remotes are joined through the tunnel, with no remote credential in the primary", func(t *testing.T) {
		m.t = t
		for _, r := range mcRemotes {
			ri := &v1beta1.RemoteIstio{}
			if err := m.c[mcPrimary].Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: r}, ri); err != nil {
				t.Fatal(err)
			}
			if ri.Status.Connection != v1beta1.ConnectionTunnel {
				t.Errorf("RemoteIstio %s: connection %q, want %q", r, ri.Status.Connection, v1beta1.ConnectionTunnel)
			}
			s := &corev1.Secret{}
			if err := m.c[mcPrimary].Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: render.RemoteSecretName(r)}, s); err != nil {
				t.Fatalf("remote secret of %s: %v", r, err)
			}
			kc, err := clientcmd.Load(s.Data[r])
			if err != nil {
				t.Fatalf("remote secret of %s: %v", r, err)
			}
			c, a := kc.Clusters[r], kc.AuthInfos[r]
			if c == nil || c.Server != m.apiURL+"/clusters/"+r || !bytes.Equal(c.CertificateAuthorityData, m.tunnelCA.CertPEM) {
				t.Errorf("remote secret of %s: cluster %+v, want server %s/clusters/%s verified by the mesh root", r, c, m.apiURL, r)
			}
			if a == nil || a.Token != "" || a.TokenFile != m.tokenFile || len(a.ClientCertificateData) != 0 {
				t.Errorf("remote secret of %s: credentials %+v, want only istiod's token file %s", r, a, m.tokenFile)
			}
			t.Logf("RemoteIstio %s: connection %s; remote secret: server %s, tokenFile %s", r, ri.Status.Connection, c.Server, a.TokenFile)
		}
		// istiod and the operator reached the remotes through the tunnel, as
		// themselves: istiod by its token (TokenReview against the primary),
		// the operator by its own token (TokenReview against the primary).
		istiod, op := m.proxiedBy(istiodUser, "token"), m.proxiedBy(opUser, "token")
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
			for _, a := range m.tunnel.Agents(r) {
				t.Logf("agent %s of %s: served %d requests, RTT %v", a.ID, a.Cluster, a.Served, a.RTT)
			}
		}
		// istiod's own account of it: each remote's registry synced.
		raw, err := os.ReadFile(m.istiod.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		log := string(raw)
		for _, r := range mcRemotes {
			want := fmt.Sprintf("kube controller for %s synced", r)
			if !strings.Contains(log, want) {
				t.Errorf("istiod's log %s has no %q", m.istiod.LogPath, want)
			}
		}
	})
	ok = ok && t.Run("istiod serves both remotes' endpoints with their localities", func(t *testing.T) {
		m.t = t
		m.waitEndpoints("", []mcEndpoint{
			{Addr: addr1 + ":7070", Locality: "r1/z1"},
			{Addr: addr2 + ":7070", Locality: "r2/z2"},
		}, 30*time.Second)
	})
	ok = ok && t.Run("RPCs complete against both remotes", func(t *testing.T) {
		got := callPeers(m.ctx, cc, 40)
		if got[addr1] == 0 || got[addr2] == 0 || got[addr1]+got[addr2] != 40 {
			t.Fatalf("40 RPCs from the primary: %v, want all answered, by both %s and %s", got, addr1, addr2)
		}
		t.Logf("40 RPCs from the primary: %v", got)
	})
	ok = ok && t.Run("every cluster's cacerts chains to one root", func(t *testing.T) {
		m.t = t
		m.checkSharedRoot(t)
	})
	ok = ok && t.Run("deleting RemoteIstio remote2 removes its endpoints", func(t *testing.T) {
		m.t = t
		m.leave(t, "remote2", "", []mcEndpoint{{Addr: addr1 + ":7070", Locality: "r1/z1"}})
		waitAllOn(t, cc, addr1, 20, 30*time.Second)
		// The binding that let istiod's identity read remote2 went with the rest.
		var crbs rbacv1.ClusterRoleBindingList
		if err := m.c["remote2"].List(m.ctx, &crbs); err != nil {
			t.Fatal(err)
		}
		for _, b := range crbs.Items {
			for _, s := range b.Subjects {
				if s.Kind == rbacv1.UserKind && s.Name == istiodRemoteUser {
					t.Errorf("ClusterRoleBinding %s in remote2 still binds %s after leaving", b.Name, istiodRemoteUser)
				}
			}
		}
	})
	_ = ok && t.Run("without remote1's agent, istiod keeps its endpoints and Connected turns False", func(t *testing.T) {
		m.t = t
		start := time.Now()
		m.agents["remote1"].stop()
		c := m.expectConnected("remote1", v1beta1.ReasonUnreachable, "no tunnel agent of cluster remote1", 30*time.Second)
		t.Logf("agent of remote1 stopped → RemoteIstio remote1 Connected=False in %v: %s: %s", time.Since(start).Round(time.Millisecond), c.Reason, c.Message)
		if len(m.tunnel.Agents("remote1")) != 0 {
			t.Errorf("the tunnel server still lists an agent of remote1: %+v", m.tunnel.Agents("remote1"))
		}
		// istiod keeps the last state it read; the data plane does not
		// depend on the tunnel.
		m.waitEndpoints("", []mcEndpoint{{Addr: addr1 + ":7070", Locality: "r1/z1"}}, 5*time.Second)
		got := callPeers(m.ctx, cc, 20)
		if got[addr1] != 20 {
			t.Errorf("20 RPCs with remote1's agent gone: %v, want all answered by %s", got, addr1)
		}
	})
	t.Logf("TestMulticlusterTunnel body done in %v", time.Since(testStart).Round(time.Millisecond))
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
