//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestMulticlusterFlatNetwork joins two remote clusters to a primary through
// RemoteIstio resources, once per connection mode, and checks, with the real
// istiod (started with the MeshConfig the operator rendered) and a real
// proxyless gRPC client in the primary, that the remotes' endpoints are
// discovered with their nodes' localities and take RPCs; that every
// cluster's cacerts chains to one root; and that deleting a RemoteIstio
// takes its cluster's endpoints away.
//
// direct: the operator and istiod reach the remotes with kubeconfig
// Secrets. The test also measures the time from creating a RemoteIstio to
// the first RPC answered in the new cluster, against a baseline measured
// first in the same run: a remote secret written by hand (istioctl-style,
// with the remote's admin kubeconfig), no operator involved.
//
// tunnel: the remotes are reachable only through the tunnel: no kubeconfig
// of a remote exists in the primary. The operator reaches them through the
// tunnel server with its own credentials (its service-account token for
// the tunnel's audience), and the real istiod through the remote secrets
// the operator writes (server = <tunnel>/clusters/<name>, istiod's own
// service-account token, authenticated by TokenReview against the primary
// and impersonated in the remote). Losing a cluster's agent keeps istiod's
// last known endpoints and turns Connected False.
func TestMulticlusterFlatNetwork(t *testing.T) {
	for _, mode := range framework.Connections {
		t.Run(string(mode), func(t *testing.T) { multiclusterFlatNetwork(t, mode) })
	}
}

func multiclusterFlatNetwork(t *testing.T, mode framework.Connection) {
	testStart := time.Now()
	workloads, joinTimeout := mcWorkloads, 90*time.Second
	if mode == framework.Tunnel {
		workloads, joinTimeout = tnWorkloads, 60*time.Second
	}
	m := startMeshMode(t, mode, v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary,
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
	}, workloads)
	ctx := t.Context()
	m.createEcho(t, false)
	nodeID := "sidecar~" + mcClientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(m.Istiod.GRPCAddr, nodeID, mcPrimary, "r1", "z1"))
	addr1, addr2 := workloads["remote1"].addr.String(), workloads["remote2"].addr.String()

	var baseline time.Duration
	if mode == framework.Direct {
		for _, r := range mcRemotes {
			m.KubeconfigSecret(t, r)
		}
		// Baseline: the remote secret of remote1 written by hand.
		kc, err := os.ReadFile(m.Env.Cluster("remote1").Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		byHand := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-by-hand", Namespace: mcNS,
				Labels:      map[string]string{render.LabelMultiCluster: "true"},
				Annotations: map[string]string{render.AnnotationClusterName: "remote1"}},
			Data: map[string][]byte{"remote1": kc},
		}
		t0 := time.Now()
		mustCreate(t, "hand-written remote secret", func() error { return m.C[mcPrimary].Create(ctx, byHand) })
		at, err := firstRPCTo(ctx, cc, addr1, 60*time.Second)
		if err != nil {
			t.Fatalf("baseline: %v", err)
		}
		baseline = at.Sub(t0)
		t.Logf("baseline: hand-written remote secret → first RPC in remote1: %v", baseline.Round(time.Millisecond))
		if err := m.C[mcPrimary].Delete(ctx, byHand); err != nil {
			t.Fatal(err)
		}
		m.WaitEndpoints(t, mcNode(""), edsCluster, nil, 30*time.Second)
		waitNoEndpoints(t, ctx, cc, 30*time.Second)
	}

	// The operator joins remote1, then remote2.
	var joins []time.Duration
	for _, r := range mcRemotes {
		t0 := time.Now()
		m.CreateRemoteIstio(t, r, "")
		at, err := firstRPCTo(ctx, cc, workloads[r].addr.String(), joinTimeout)
		if err != nil {
			t.Fatalf("joining %s (%s): %v", r, mode, err)
		}
		joins = append(joins, at.Sub(t0))
		t.Logf("RemoteIstio %s created → first RPC in %s (%s): %v", r, r, mode, at.Sub(t0).Round(time.Millisecond))
	}
	if mode == framework.Direct {
		t.Logf("BENCH join (create → first RPC answered in the new cluster), same run:\n"+
			"  %-52s %10s\n  %-52s %10v\n  %-52s %10v\n  %-52s %10v",
			"flow", "time",
			"baseline: remote secret by hand (admin kubeconfig)", baseline.Round(time.Millisecond),
			"meshfleet: RemoteIstio remote1 (first remote)", joins[0].Round(time.Millisecond),
			"meshfleet: RemoteIstio remote2 (second remote)", joins[1].Round(time.Millisecond))
	} else {
		t.Logf("BENCH join through the tunnel (RemoteIstio created → first RPC answered in the new cluster):\n"+
			"  %-52s %10s\n  %-52s %10v\n  %-52s %10v",
			"flow", "time",
			"meshfleet tunnel: RemoteIstio remote1 (first remote)", joins[0].Round(time.Millisecond),
			"meshfleet tunnel: RemoteIstio remote2 (second remote)", joins[1].Round(time.Millisecond))
	}

	for _, r := range mcRemotes {
		m.WaitRemote(t, r, v1beta1.ConditionReady, 60*time.Second)
	}

	ok := true
	if mode == framework.Tunnel {
		ok = t.Run("remotes are joined through the tunnel, with no remote credential in the primary", func(t *testing.T) {
			checkTunnelled(t, m.Mesh)
		})
	}
	ok = ok && t.Run("istiod serves both remotes' endpoints with their localities", func(t *testing.T) {
		m.WaitEndpoints(t, mcNode(""), edsCluster, []mcEndpoint{
			{Addr: addr1 + ":7070", Locality: "r1/z1"},
			{Addr: addr2 + ":7070", Locality: "r2/z2"},
		}, 30*time.Second)
	})
	ok = ok && t.Run("RPCs complete against both remotes", func(t *testing.T) {
		got := callPeers(t.Context(), cc, 40)
		if got[addr1] == 0 || got[addr2] == 0 || got[addr1]+got[addr2] != 40 {
			t.Fatalf("40 RPCs from the primary: %v, want all answered, by both %s and %s", got, addr1, addr2)
		}
		t.Logf("40 RPCs from the primary: %v", got)
	})
	if mode == framework.Direct {
		ok = ok && t.Run("with outlier detection, the client's region comes first", func(t *testing.T) {
			applyOutlierDestinationRule(t.Context(), t, m.Env.Cluster(mcPrimary).Config)
			m.WaitEndpoints(t, mcNode(""), edsCluster, []mcEndpoint{
				{Addr: addr1 + ":7070", Locality: "r1/z1", Priority: 0},
				{Addr: addr2 + ":7070", Locality: "r2/z2", Priority: 1},
			}, 30*time.Second)
			waitAllOn(t, cc, addr1, 20, 30*time.Second)
			// Without it again, both localities share priority 0.
			dr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
				"metadata": map[string]any{"name": echoService, "namespace": "default"}}}
			if err := m.C[mcPrimary].Delete(t.Context(), dr); err != nil {
				t.Fatalf("deleting DestinationRule default/%s: %v", echoService, err)
			}
			m.WaitEndpoints(t, mcNode(""), edsCluster, []mcEndpoint{
				{Addr: addr1 + ":7070", Locality: "r1/z1"},
				{Addr: addr2 + ":7070", Locality: "r2/z2"},
			}, 30*time.Second)
		})
	}
	ok = ok && t.Run("every cluster's cacerts chains to one root", func(t *testing.T) {
		m.CheckSharedRoot(t)
	})
	ok = ok && t.Run("deleting RemoteIstio remote2 removes its endpoints", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, "RPCs answered in both remotes again", func() error {
			if got := callPeers(t.Context(), cc, 20); got[addr1] == 0 || got[addr2] == 0 || got[addr1]+got[addr2] != 20 {
				return fmt.Errorf("20 RPCs: %v", got)
			}
			return nil
		})
		leave(t, m.Mesh, "remote2", "", []mcEndpoint{{Addr: addr1 + ":7070", Locality: "r1/z1"}})
		waitAllOn(t, cc, addr1, 20, 30*time.Second)
		if mode != framework.Tunnel {
			return
		}
		// The binding that let istiod's identity read remote2 went with the rest.
		var crbs rbacv1.ClusterRoleBindingList
		if err := m.C["remote2"].List(t.Context(), &crbs); err != nil {
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
	if mode == framework.Tunnel {
		_ = ok && t.Run("without remote1's agent, istiod keeps its endpoints and Connected turns False", func(t *testing.T) {
			start := time.Now()
			m.StopAgent("remote1")
			c := m.ExpectConnected(t, "remote1", v1beta1.ReasonUnreachable, "no tunnel agent of cluster remote1", 30*time.Second)
			t.Logf("agent of remote1 stopped → RemoteIstio remote1 Connected=False in %v: %s: %s", time.Since(start).Round(time.Millisecond), c.Reason, c.Message)
			if len(m.Tunnel.Agents("remote1")) != 0 {
				t.Errorf("the tunnel server still lists an agent of remote1: %+v", m.Tunnel.Agents("remote1"))
			}
			// istiod keeps the last state it read; the data plane does not
			// depend on the tunnel.
			m.WaitEndpoints(t, mcNode(""), edsCluster, []mcEndpoint{{Addr: addr1 + ":7070", Locality: "r1/z1"}}, 5*time.Second)
			got := callPeers(t.Context(), cc, 20)
			if got[addr1] != 20 {
				t.Errorf("20 RPCs with remote1's agent gone: %v, want all answered by %s", got, addr1)
			}
		})
	}
	t.Logf("TestMulticlusterFlatNetwork/%s body done in %v", mode, time.Since(testStart).Round(time.Millisecond))
}

// TestMulticlusterGatewayConnected: the primary and remote1 share network
// net1, remote2 is on net2 behind its east-west gateway. A client on net1
// must get remote1's endpoint as is and remote2's replaced by the gateway's
// load-balancer address on port 15443 (EDS only: no Envoy gateway runs here).
func TestMulticlusterGatewayConnected(t *testing.T) {
	m := startMesh(t, v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary, Network: "net1",
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterGatewayConnected},
		LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
	})
	m.createEcho(t, true)
	ctx := t.Context()
	networks := map[string]string{"remote1": "net1", "remote2": "net2"}
	for _, r := range mcRemotes {
		m.Join(t, r, networks[r])
	}
	for _, r := range mcRemotes {
		m.WaitRemote(t, r, v1beta1.ConditionInstalled, 90*time.Second)
	}
	// The cloud load balancers: give the east-west gateways of remote2 (net2)
	// and of the primary (net1) their addresses.
	for cluster, addr := range map[string]string{"remote2": mcGatewayRemote2.String(), mcPrimary: mcGatewayPrimary.String()} {
		svc, err := m.Kube[cluster].CoreV1().Services(render.GatewayNamespace).Get(ctx, render.EastWestGatewayName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the operator rendered no east-west gateway Service in %s: %v", cluster, err)
		}
		t.Logf("%s east-west gateway Service: type %s, network label %q, ports %v", cluster, svc.Spec.Type, svc.Labels[render.LabelNetwork], svc.Spec.Ports)
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr}}
		if _, err := m.Kube[cluster].CoreV1().Services(render.GatewayNamespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("setting the load-balancer address of %s's east-west gateway: %v", cluster, err)
		}
	}
	for _, r := range mcRemotes {
		n := m.RollOut(t, r)
		t.Logf("rolled out %d Deployments in %s", n, r)
		m.WaitRemote(t, r, v1beta1.ConditionReady, 60*time.Second)
	}
	testenv.Eventually(t, 30*time.Second, "meshNetworks lists net2 with remote2", func() error {
		cm, err := m.Kube[mcPrimary].CoreV1().ConfigMaps(mcNS).Get(ctx, "istio", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !strings.Contains(cm.Data["meshNetworks"], "remote2") {
			return fmt.Errorf("meshNetworks: %s", cm.Data["meshNetworks"])
		}
		t.Logf("meshNetworks:\n%s", cm.Data["meshNetworks"])
		return nil
	})
	addr1 := mcEchoRemote1.String()
	gw := mcGatewayRemote2.String() + ":" + fmt.Sprint(render.CrossNetworkPort)

	ok := t.Run("a client on net1 gets remote2's endpoints as its east-west gateway", func(t *testing.T) {
		m.WaitEndpoints(t, mcNode("net1"), edsCluster, []mcEndpoint{
			{Addr: addr1 + ":7070", Locality: "r1/z1"},
			{Addr: gw, Locality: "r2/z2"},
		}, 60*time.Second)
		// Split horizon the other way: on net2, remote2's endpoint is local
		// and remote1's (net1) is the primary's east-west gateway.
		m.WaitEndpoints(t, mcNode("net2"), edsCluster, []mcEndpoint{
			{Addr: mcEchoRemote2.String() + ":7070", Locality: "r2/z2"},
			{Addr: mcGatewayPrimary.String() + ":" + fmt.Sprint(render.CrossNetworkPort), Locality: "r1/z1"},
		}, 30*time.Second)
	})
	ok = ok && t.Run("every cluster's cacerts chains to one root", func(t *testing.T) {
		m.CheckSharedRoot(t)
	})
	_ = ok && t.Run("deleting RemoteIstio remote2 removes its endpoints", func(t *testing.T) {
		leave(t, m.Mesh, "remote2", "net1", []mcEndpoint{{Addr: addr1 + ":7070", Locality: "r1/z1"}})
	})
}

// leave deletes a RemoteIstio, checks istiod's answer holds only want, and
// waits until the RemoteIstio and its remote secret are gone.
func leave(t *testing.T, m *framework.Mesh, remote, network string, want []mcEndpoint) {
	t.Helper()
	start := time.Now()
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: mcNS}}
	if err := m.C[mcPrimary].Delete(t.Context(), ri); err != nil {
		t.Fatal(err)
	}
	m.WaitEndpoints(t, mcNode(network), edsCluster, want, 60*time.Second)
	t.Logf("RemoteIstio %s deleted → gone from istiod's EDS within %v", remote, time.Since(start).Round(time.Millisecond))
	m.WaitLeft(t, remote)
}
