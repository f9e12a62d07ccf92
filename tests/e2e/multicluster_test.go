//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// TestMulticlusterFlatNetwork joins two remote clusters to a primary through
// RemoteIstio resources and checks, with the real istiod (started with the
// MeshConfig the operator rendered) and a real proxyless gRPC client in the
// primary, that the remotes' endpoints are discovered with their nodes'
// localities and take RPCs; that every cluster's cacerts chains to one root;
// and that deleting a RemoteIstio takes its cluster's endpoints away.
//
// It also measures the time from creating a RemoteIstio to the first RPC
// answered in the new cluster, against a baseline measured first in the same
// run: a remote secret written by hand (istioctl-style, with the remote's
// admin kubeconfig), no operator involved.
func TestMulticlusterFlatNetwork(t *testing.T) {
	m := startMesh(t, v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary,
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
	})
	m.createEcho(false)
	for _, r := range mcRemotes {
		m.kubeconfigSecret(r)
	}
	nodeID := "sidecar~" + mcClientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(m.istiod.GRPCAddr, nodeID, mcPrimary, "r1", "z1"))
	addr1, addr2 := mcEchoRemote1.String(), mcEchoRemote2.String()

	// Baseline: the remote secret of remote1 written by hand.
	kc, err := os.ReadFile(m.env.Cluster("remote1").Kubeconfig)
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
	mustCreate(t, "hand-written remote secret", func() error { return m.c[mcPrimary].Create(m.ctx, byHand) })
	at, err := firstRPCTo(m.ctx, cc, addr1, 60*time.Second)
	if err != nil {
		t.Fatalf("baseline: %v", err)
	}
	baseline := at.Sub(t0)
	t.Logf("baseline: hand-written remote secret → first RPC in remote1: %v", baseline.Round(time.Millisecond))
	if err := m.c[mcPrimary].Delete(m.ctx, byHand); err != nil {
		t.Fatal(err)
	}
	m.waitEndpoints("", nil, 30*time.Second)
	waitNoEndpoints(t, m.ctx, cc, 30*time.Second)

	// The operator joins remote1, then remote2.
	var joins []time.Duration
	for _, r := range mcRemotes {
		t0 := time.Now()
		m.createRemoteIstio(r, "")
		at, err := firstRPCTo(m.ctx, cc, mcWorkloads[r].addr.String(), 90*time.Second)
		if err != nil {
			t.Fatalf("joining %s: %v", r, err)
		}
		joins = append(joins, at.Sub(t0))
		t.Logf("RemoteIstio %s created → first RPC in %s: %v", r, r, at.Sub(t0).Round(time.Millisecond))
	}
	t.Logf("BENCH join (create → first RPC answered in the new cluster), same run:\n"+
		"  %-52s %10s\n  %-52s %10v\n  %-52s %10v\n  %-52s %10v",
		"flow", "time",
		"baseline: remote secret by hand (admin kubeconfig)", baseline.Round(time.Millisecond),
		"meshfleet: RemoteIstio remote1 (first remote)", joins[0].Round(time.Millisecond),
		"meshfleet: RemoteIstio remote2 (second remote)", joins[1].Round(time.Millisecond))

	for _, r := range mcRemotes {
		m.waitRemote(r, v1beta1.ConditionReady, 60*time.Second)
	}

	ok := t.Run("istiod serves both remotes' endpoints with their localities", func(t *testing.T) {
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
	ok = ok && t.Run("with outlier detection, the client's region comes first", func(t *testing.T) {
		m.t = t
		applyOutlierDestinationRule(m.ctx, t, m.env.Cluster(mcPrimary).Config)
		m.waitEndpoints("", []mcEndpoint{
			{Addr: addr1 + ":7070", Locality: "r1/z1", Priority: 0},
			{Addr: addr2 + ":7070", Locality: "r2/z2", Priority: 1},
		}, 30*time.Second)
		waitAllOn(t, cc, addr1, 20, 30*time.Second)
		// Without it again, both localities share priority 0.
		dr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
			"metadata": map[string]any{"name": echoService, "namespace": "default"}}}
		if err := m.c[mcPrimary].Delete(m.ctx, dr); err != nil {
			t.Fatalf("deleting DestinationRule default/%s: %v", echoService, err)
		}
		m.waitEndpoints("", []mcEndpoint{
			{Addr: addr1 + ":7070", Locality: "r1/z1"},
			{Addr: addr2 + ":7070", Locality: "r2/z2"},
		}, 30*time.Second)
	})
	ok = ok && t.Run("every cluster's cacerts chains to one root", func(t *testing.T) {
		m.t = t
		m.checkSharedRoot(t)
	})
	_ = ok && t.Run("deleting RemoteIstio remote2 removes its endpoints", func(t *testing.T) {
		m.t = t
		m.eventually(30*time.Second, "RPCs answered in both remotes again", func() error {
			if got := callPeers(m.ctx, cc, 20); got[addr1] == 0 || got[addr2] == 0 || got[addr1]+got[addr2] != 20 {
				return fmt.Errorf("20 RPCs: %v", got)
			}
			return nil
		})
		m.leave(t, "remote2", "", []mcEndpoint{{Addr: addr1 + ":7070", Locality: "r1/z1"}})
		waitAllOn(t, cc, addr1, 20, 30*time.Second)
	})
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
	m.createEcho(true)
	networks := map[string]string{"remote1": "net1", "remote2": "net2"}
	for _, r := range mcRemotes {
		m.kubeconfigSecret(r)
		m.createRemoteIstio(r, networks[r])
	}
	for _, r := range mcRemotes {
		m.waitRemote(r, v1beta1.ConditionInstalled, 90*time.Second)
	}
	// The cloud load balancers: give the east-west gateways of remote2 (net2)
	// and of the primary (net1) their addresses.
	for cluster, addr := range map[string]string{"remote2": mcGatewayRemote2.String(), mcPrimary: mcGatewayPrimary.String()} {
		svc, err := m.kube[cluster].CoreV1().Services(render.GatewayNamespace).Get(m.ctx, render.EastWestGatewayName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the operator rendered no east-west gateway Service in %s: %v", cluster, err)
		}
		t.Logf("%s east-west gateway Service: type %s, network label %q, ports %v", cluster, svc.Spec.Type, svc.Labels[render.LabelNetwork], svc.Spec.Ports)
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr}}
		if _, err := m.kube[cluster].CoreV1().Services(render.GatewayNamespace).UpdateStatus(m.ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("setting the load-balancer address of %s's east-west gateway: %v", cluster, err)
		}
	}
	for _, r := range mcRemotes {
		n := m.rollOut(r)
		t.Logf("rolled out %d Deployments in %s", n, r)
		m.waitRemote(r, v1beta1.ConditionReady, 60*time.Second)
	}
	m.eventually(30*time.Second, "meshNetworks lists net2 with remote2", func() error {
		cm, err := m.kube[mcPrimary].CoreV1().ConfigMaps(mcNS).Get(m.ctx, "istio", metav1.GetOptions{})
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
		m.t = t
		m.waitEndpoints("net1", []mcEndpoint{
			{Addr: addr1 + ":7070", Locality: "r1/z1"},
			{Addr: gw, Locality: "r2/z2"},
		}, 60*time.Second)
		// Split horizon the other way: on net2, remote2's endpoint is local
		// and remote1's (net1) is the primary's east-west gateway.
		m.waitEndpoints("net2", []mcEndpoint{
			{Addr: mcEchoRemote2.String() + ":7070", Locality: "r2/z2"},
			{Addr: mcGatewayPrimary.String() + ":" + fmt.Sprint(render.CrossNetworkPort), Locality: "r1/z1"},
		}, 30*time.Second)
	})
	ok = ok && t.Run("every cluster's cacerts chains to one root", func(t *testing.T) {
		m.t = t
		m.checkSharedRoot(t)
	})
	_ = ok && t.Run("deleting RemoteIstio remote2 removes its endpoints", func(t *testing.T) {
		m.t = t
		m.leave(t, "remote2", "net1", []mcEndpoint{{Addr: addr1 + ":7070", Locality: "r1/z1"}})
	})
}

// checkSharedRoot verifies with crypto/x509 that the cacerts of the primary
// and of both remotes are distinct intermediates, each issued for its
// cluster and chaining to the primary's root.
func (m *mcMesh) checkSharedRoot(t *testing.T) {
	root := &corev1.Secret{}
	if err := m.c[mcPrimary].Get(m.ctx, client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.RootSecretName}, root); err != nil {
		t.Fatalf("root CA Secret in the primary: %v", err)
	}
	rootCert := mcParseCert(t, root.Data[meshca.RootCertKey])
	seen := map[string]bool{}
	for _, c := range []string{mcPrimary, "remote1", "remote2"} {
		s := &corev1.Secret{}
		if err := m.c[c].Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: meshca.CACertsSecretName}, s); err != nil {
			t.Fatalf("cacerts in %s: %v", c, err)
		}
		inter := mcParseCert(t, s.Data[ca.CACertKey])
		if err := ca.VerifyChain(inter, rootCert, time.Now()); err != nil {
			t.Errorf("cacerts of %s does not chain to the primary's root: %v", c, err)
		}
		if got := mcParseCert(t, s.Data["root-cert.pem"]); !got.Equal(rootCert) {
			t.Errorf("root-cert.pem of %s is not the mesh root", c)
		}
		if got := ca.ClusterOf(inter); got != c {
			t.Errorf("cacerts of %s was issued for cluster %q", c, got)
		}
		seen[inter.SerialNumber.String()] = true
		t.Logf("%s: intermediate %q (serial %s) chains to root %q", c, inter.Subject, inter.SerialNumber, rootCert.Subject)
	}
	if len(seen) != 3 {
		t.Errorf("clusters share intermediates: %d distinct of 3", len(seen))
	}
}

// leave deletes a RemoteIstio, waits until it is gone, and checks istiod's
// answer holds only want.
func (m *mcMesh) leave(t *testing.T, remote, network string, want []mcEndpoint) {
	start := time.Now()
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: remote, Namespace: mcNS}}
	if err := m.c[mcPrimary].Delete(m.ctx, ri); err != nil {
		t.Fatal(err)
	}
	m.waitEndpoints(network, want, 60*time.Second)
	t.Logf("RemoteIstio %s deleted → gone from istiod's EDS within %v", remote, time.Since(start).Round(time.Millisecond))
	m.eventually(60*time.Second, "RemoteIstio "+remote+" gone", func() error {
		err := m.c[mcPrimary].Get(m.ctx, client.ObjectKeyFromObject(ri), &v1beta1.RemoteIstio{})
		if err == nil {
			return fmt.Errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})
	if err := m.c[mcPrimary].Get(m.ctx, client.ObjectKey{Namespace: mcNS, Name: render.RemoteSecretName(remote)}, &corev1.Secret{}); err == nil {
		t.Errorf("remote secret of %s still in the primary", remote)
	}
}
