package check

import (
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func cacerts(t *testing.T, root *ca.KeyPair, cluster string, ttl time.Duration) *CACerts {
	t.Helper()
	in, err := ca.IssueIntermediate(root, ca.IntermediateOptions{ClusterName: cluster, TTL: ttl, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return &CACerts{CertPEM: in.CertPEM, RootPEM: root.CertPEM}
}

// healthy is a mesh of a primary, a direct remote and a tunnelled one,
// every part working.
func healthy(t *testing.T) *Facts {
	root, err := ca.NewRoot(ca.RootOptions{TTL: 365 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	gw := []Workload{{Namespace: "istio-gateways", Name: "istio-eastwestgateway", Replicas: 1, Available: 1}}
	return &Facts{
		Now: now, Namespace: "istio-system",
		API:      API{Host: "https://primary", Version: "v1.37.2"},
		CRDs:     map[string]CRD{"istios.meshfleet.io": {true}, "remoteistios.meshfleet.io": {true}, "destinationrules.networking.istio.io": {true}, "virtualservices.networking.istio.io": {true}, "peerauthentications.security.istio.io": {true}},
		Operator: &Workload{Namespace: "meshfleet-system", Name: "meshfleet-operator", Replicas: 1, Available: 1},
		Clusters: []Cluster{
			{Resource: "istio", Name: "primary", Role: RolePrimary, Phase: "Ready", Generation: 2, ObservedGeneration: 2, CA: cacerts(t, root, "primary", 90*24*time.Hour), Gateways: gw, Readable: true},
			{Resource: "remote-1", Name: "remote-1", Role: RoleRemote, Connection: "Tunnel", Phase: "Ready", Generation: 1, ObservedGeneration: 1, KubernetesVersion: "v1.37.2", ReadErr: "reached through the tunnel"},
			{Resource: "remote-2", Name: "remote-2", Role: RoleRemote, Connection: "Direct", Phase: "Ready", Generation: 1, ObservedGeneration: 1, KubernetesVersion: "v1.37.2",
				CA: cacerts(t, root, "remote-2", 90*24*time.Hour), Gateways: gw, Readable: true, ReaderAccess: &Probe{Code: 200}},
		},
		Istiod: Endpoint[[]IstiodCluster]{URL: "http://istiod/debug/clusterz", Value: []IstiodCluster{{ID: "primary", SyncStatus: "synced"},
			{ID: "remote-1", SecretName: "istio-system/istio-remote-secret-remote-1", SyncStatus: "synced"}, {ID: "remote-2", SyncStatus: "synced"}}},
		Tunnel: Endpoint[TunnelState]{URL: "http://tunnel/metrics", Value: TunnelState{Active: true, Agents: map[string]int{"remote-1": 2},
			RTT: map[string]map[string]time.Duration{"remote-1": {"a": 3 * time.Millisecond, "b": time.Millisecond}}}},
		Locality: &Locality{Verdict: health.Verdict{State: health.StateOK, Line: "3 members synced, 12 rules"},
			Debug: Endpoint[LocalityDebug]{URL: "http://locality/debug/locality", Value: LocalityDebug{Leader: true, Rules: 12,
				Members: []LocalityMember{{"primary", true}, {"remote-1", true}, {"remote-2", true}}}}},
	}
}

func TestHealthyMeshPasses(t *testing.T) {
	rs := Run(healthy(t), Checks)
	for _, r := range rs {
		if r.Status != StatusOK {
			t.Errorf("%s / %s: %s %s (hint %s)", r.Group, r.Check, r.Status, r.Message, r.Hint)
		}
	}
	groups := map[string]bool{}
	for _, r := range rs {
		groups[r.Group] = true
	}
	for _, c := range Checks {
		if !groups[c.Group] {
			t.Errorf("group %s ran no check", c.Group)
		}
	}
	if Failed(rs) {
		t.Error("Failed = true")
	}
	if !strings.Contains(find(t, rs, "remote-1's tunnel agents are connected").Message, "2 agents, RTT 1ms") {
		t.Errorf("tunnel message: %+v", find(t, rs, "remote-1's tunnel agents are connected"))
	}
}

func find(t *testing.T, rs []Result, check string) Result {
	t.Helper()
	for _, r := range rs {
		if r.Check == check {
			return r
		}
	}
	t.Fatalf("no check %q in %+v", check, rs)
	return Result{}
}

func TestBrokenMeshFailsTheRightCheck(t *testing.T) {
	otherRoot, err := ca.NewRoot(ca.RootOptions{TTL: 365 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		break_ func(f *Facts)
		check  string
		status Status
		hint   string
	}{
		{"API unreachable", func(f *Facts) { f.API.Err = "connection refused" }, "can reach the primary's Kubernetes API", StatusFail, "--kubeconfig"},
		{"old remote", func(f *Facts) { f.Clusters[2].KubernetesVersion = "v1.28.3" }, "cluster remote-2 runs Kubernetes 1.29.0 or later", StatusFail, "upgrade"},
		{"CRD missing", func(f *Facts) { delete(f.CRDs, "remoteistios.meshfleet.io") }, "CRD remoteistios.meshfleet.io is established", StatusFail, "meshctl install"},
		{"operator down", func(f *Facts) { f.Operator.Available = 0 }, "the operator's Deployment is available", StatusFail, "logs"},
		{"operator behind", func(f *Facts) { f.Clusters[1].Generation = 2 }, "the operator has processed every resource's latest spec", StatusFail, "operator"},
		{"remote unreachable", func(f *Facts) { f.Clusters[1].Phase = "Unreachable" }, "remote remote-1 is Ready", StatusFail, "tunnel agent"},
		{"intermediate of another root", func(f *Facts) { f.Clusters[2].CA = cacerts(t, otherRoot, "remote-2", time.Hour*24*90) }, "remote-2's intermediate CA (cacerts) chains to the root and is valid", StatusFail, "delete remote-2's cacerts"},
		{"intermediate expiring", func(f *Facts) {
			f.Clusters[2].CA = cacerts(t, mustRoot(t), "remote-2", 48*time.Hour)
			f.Clusters[0].CA.RootPEM = f.Clusters[2].CA.RootPEM
			f.Clusters[0].CA.CertPEM = f.Clusters[2].CA.CertPEM
		}, "remote-2's intermediate CA (cacerts) chains to the root and is valid", StatusWarn, "renews"},
		{"reader token revoked", func(f *Facts) { f.Clusters[2].ReaderAccess = &Probe{Code: 401, Err: "Unauthorized"} }, "istiod's credentials for remote-2 are accepted", StatusFail, "deleting Secret istio-system/istio-remote-secret-remote-2"},
		{"istiod unreachable", func(f *Facts) { f.Istiod.Err = "connection refused" }, "istiod answers on its debug endpoint", StatusFail, "port-forward"},
		{"istiod address unknown", func(f *Facts) { f.Istiod = Endpoint[[]IstiodCluster]{} }, "istiod answers on its debug endpoint", StatusWarn, "--istiod-debug"},
		{"istiod lacks a remote", func(f *Facts) { f.Istiod.Value = f.Istiod.Value[:2] }, "istiod has synced remote-2", StatusFail, "remote secret"},
		{"istiod timed out on a remote", func(f *Facts) { f.Istiod.Value[1].SyncStatus = "timeout" }, "istiod has synced remote-1", StatusFail, "log"},
		{"agents stopped", func(f *Facts) { f.Tunnel.Value.Agents = map[string]int{} }, "remote-1's tunnel agents are connected", StatusFail, "meshctl cluster join remote-1 --tunnel"},
		{"tunnel standby", func(f *Facts) { f.Tunnel.Value.Active = false }, "the tunnel server answers", StatusWarn, "Lease"},
		{"locality down", func(f *Facts) { f.Locality.Debug.Err = "connection refused" }, "the locality server answers on its debug endpoint", StatusFail, "meshfleet-locality"},
		{"locality not running", func(f *Facts) {
			f.Locality.Verdict = health.Verdict{State: health.StateNotRunning, Line: "Lease expired"}
		}, "the locality server publishes a healthy summary", StatusFail, "get pods"},
		{"locality member unsynced", func(f *Facts) { f.Locality.Debug.Value.Members[1].Synced = false }, "the locality server has synced remote-1", StatusFail, "meshctl locality"},
		{"gateway down", func(f *Facts) {
			f.Clusters[2].Gateways = []Workload{{Namespace: "istio-gateways", Name: "istio-eastwestgateway", Replicas: 1}}
		}, "remote-2's gateway istio-gateways/istio-eastwestgateway is available", StatusFail, "describe deploy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy(t)
			tc.break_(f)
			rs := Run(f, Checks)
			r := find(t, rs, tc.check)
			if r.Status != tc.status || !strings.Contains(r.Hint, tc.hint) {
				t.Errorf("got %s %q hint %q; want %s with a hint containing %q", r.Status, r.Message, r.Hint, tc.status, tc.hint)
			}
			if Failed(rs) != (tc.status == StatusFail) {
				t.Errorf("Failed = %v", Failed(rs))
			}
		})
	}
}

func mustRoot(t *testing.T) *ca.KeyPair {
	r, err := ca.NewRoot(ca.RootOptions{TTL: 365 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseTunnelMetrics(t *testing.T) {
	st, err := ParseTunnelMetrics(strings.NewReader(`# TYPE meshfleet_tunnel_server_active gauge
meshfleet_tunnel_server_active 1
# TYPE meshfleet_tunnel_agents_connected gauge
meshfleet_tunnel_agents_connected{cluster="remote-1"} 2
meshfleet_tunnel_agents_connected{cluster="remote-2"} 0
# TYPE meshfleet_tunnel_agent_rtt_seconds gauge
meshfleet_tunnel_agent_rtt_seconds{agent="a",cluster="remote-1"} 0.0015
`))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Active || st.Agents["remote-1"] != 2 || st.Agents["remote-2"] != 0 || st.RTT["remote-1"]["a"] != 1500*time.Microsecond {
		t.Errorf("%+v", st)
	}
	if _, err := ParseTunnelMetrics(strings.NewReader("up 1\n")); err == nil {
		t.Error("metrics of something else accepted")
	}
}
