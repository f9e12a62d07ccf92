//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/chart"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/podrun"
)

// TestChartTunnelMeshFromManifests installs meshfleet with its Helm chart
// (Helm SDK) with the tunnel server run by the operator, and runs every
// meshfleet Deployment from its own manifest with the render-then-run
// harness: both operator replicas from the chart's Deployment, both tunnel
// server replicas from the operator's, both agent replicas from the one
// `meshctl cluster join --tunnel --remote-kubeconfig` applied in the
// remote, and the locality server from the operator's. The tunnel's
// Services are played by podrun fronts that select the Pods by label, as
// kube-proxy would (the tunnel server labels its active Pod). Real istiod
// runs out of cluster with the MeshConfig and the remote secret the
// operator rendered (through the tunnel, with istiod's token for the
// tunnel's audience). The mesh must reach Ready (Istio and RemoteIstio,
// with meshctl join exiting 0) and a proxyless gRPC client in r1/z1 must
// get its zone's endpoint (in the remote, through the tunnel) at priority
// 0 and send every RPC there.
func TestChartTunnelMeshFromManifests(t *testing.T) {
	testStart := time.Now()
	inZone := workload{name: "echo-remote1", node: "node-r1-z1", region: "r1", zone: "z1", addr: tnEchoRemote1} // in remote1
	away := workload{name: "echo-primary", node: "node-r2-z2", region: "r2", zone: "z2", addr: tnEchoRemote2}   // in the primary
	if err := netns.Setup(inZone.addr, away.addr); err != nil {
		t.Fatal(err)
	}
	bins := t.TempDir()
	for _, b := range []string{"meshfleet", "meshctl"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bins, b), "../../cmd/"+b).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b, err, out)
		}
	}
	meshfleetBin, meshctlBin := filepath.Join(bins, "meshfleet"), filepath.Join(bins, "meshctl")
	t.Logf("binaries built in %v", time.Since(testStart).Round(time.Millisecond))

	cs := framework.StartClusters(t, localcluster.ClusterOptions{Name: mcPrimary}, localcluster.ClusterOptions{Name: "remote1"})
	env, ctx := cs.Env, t.Context()
	m := &tunnelMesh{mcMesh: &mcMesh{t: t, ctx: ctx, env: env, c: cs.C, kube: cs.Kube}}
	primary, remote := env.Cluster(mcPrimary), env.Cluster("remote1")
	createNodes(ctx, t, m.kube["remote1"], []workload{inZone})
	createNodes(ctx, t, m.kube[mcPrimary], []workload{away})

	// Where the tunnel's Services are reached: the fronts listen there
	// once the operator has rendered the Services.
	apiPort, _ := localproc.FreePort()
	agentPort, _ := localproc.FreePort()
	apiAddr, agentAddr := fmt.Sprintf("127.0.0.1:%d", apiPort), fmt.Sprintf("127.0.0.1:%d", agentPort)

	start := time.Now()
	ns := install.OperatorNamespace
	if err := chart.Install(ctx, primary.Kubeconfig, ns, map[string]any{"tunnel": map[string]any{
		"url": "https://" + apiAddr, "serverHosts": []any{"127.0.0.1"}, "runServer": true, "agentServiceType": "ClusterIP"}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install in %v", time.Since(start).Round(time.Millisecond))
	opDep := &appsv1.Deployment{}
	if err := m.c[mcPrimary].Get(ctx, client.ObjectKey{Namespace: ns, Name: "meshfleet-operator"}, opDep); err != nil {
		t.Fatal(err)
	}
	rp := &podrun.Runner{Admin: primary.Config, APIServer: primary.URL, CACertPEM: primary.CACertPEM, Images: map[string]string{"*": meshfleetBin}}
	rr := &podrun.Runner{Admin: remote.Config, APIServer: remote.URL, CACertPEM: remote.CACertPEM, Images: map[string]string{"*": meshfleetBin}}

	// istiod is not run from its manifest: where the remote secrets say it
	// finds its token for the tunnel's audience is a local file.
	m.tokenFile = filepath.Join(env.Dir, "istiod-token")
	var ops []*podrun.Pod
	for i := range *opDep.Spec.Replicas {
		health, _ := localproc.FreePort()
		ops = append(ops, rp.Run(t, opDep, podrun.Options{PodName: fmt.Sprintf("meshfleet-operator-podrun-%d", i), Register: true,
			Ports: map[string]int{"health": health},
			Args: map[string][]string{"operator": {"--metrics-addr=0", fmt.Sprintf("--health-addr=127.0.0.1:%d", health),
				"--istiod-token-file=" + m.tokenFile}}}))
	}
	t.Logf("operator: %d replicas from the chart's Deployment: %q", len(ops), ops[0].Argv["operator"])

	mustCreate(t, "namespace istio-system", func() error {
		_, err := m.kube[mcPrimary].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mcNS}}, metav1.CreateOptions{})
		return err
	})
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: mcNS}, Spec: v1beta1.IstioSpec{
		Version: "1.30.3", ClusterName: mcPrimary,
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork},
		LocalityLB:   v1beta1.LocalityLBSpec{Enabled: true},
	}}
	mustCreate(t, "Istio istio-system/istio", func() error { return m.c[mcPrimary].Create(ctx, ist) })
	start = time.Now()
	m.eventually(3*time.Minute, "Istio ControlPlaneDeployed", func() error {
		for _, p := range ops {
			if err := p.Running(); err != nil {
				t.Fatal(err)
			}
		}
		got := &v1beta1.Istio{}
		if err := m.c[mcPrimary].Get(ctx, client.ObjectKeyFromObject(ist), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			return fmt.Errorf("conditions: %s", mcConditions(got.Status.Conditions))
		}
		return nil
	})
	t.Logf("the chart's operator deployed the control plane in %v", time.Since(start).Round(time.Millisecond))

	// The tunnel server, both replicas, from the operator's Deployment, and
	// its two Services.
	getDep := func(c client.Client, namespace, name string) *appsv1.Deployment {
		d := &appsv1.Deployment{}
		m.eventually(time.Minute, "Deployment "+namespace+"/"+name, func() error {
			return c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, d)
		})
		return d
	}
	getSvc := func(name string) *corev1.Service {
		s := &corev1.Service{}
		m.eventually(time.Minute, "Service "+name, func() error {
			return m.c[mcPrimary].Get(ctx, client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: name}, s)
		})
		return s
	}
	tsDep := getDep(m.c[mcPrimary], render.TunnelServerNamespace, render.TunnelServerName)
	m.eventually(time.Minute, "the tunnel server's certificate", func() error {
		return m.c[mcPrimary].Get(ctx, client.ObjectKey{Namespace: render.TunnelServerNamespace, Name: render.TunnelServerTLSSecretName}, &corev1.Secret{})
	})
	rp.Front(t, getSvc(render.TunnelServiceName), "https-api", apiAddr)
	rp.Front(t, getSvc(render.TunnelAgentsServiceName), "https-agents", agentAddr)
	var servers []*podrun.Pod
	for i := range *tsDep.Spec.Replicas {
		a, _ := localproc.FreePort()
		g, _ := localproc.FreePort()
		servers = append(servers, rp.Run(t, tsDep, podrun.Options{PodName: fmt.Sprintf("%s-podrun-%d", render.TunnelServerName, i), Register: true,
			Ports: map[string]int{"api": a, "agents": g},
			Args:  map[string][]string{"server": {fmt.Sprintf("--api-addr=127.0.0.1:%d", a), fmt.Sprintf("--agent-addr=127.0.0.1:%d", g), "--metrics-addr="}}}))
	}
	waitPodsReady(m, tsDep, rp, servers)
	t.Logf("tunnel server: %d replicas from the operator's Deployment: %q", len(servers), servers[0].Argv["server"])

	// The locality server, every replica, from the operator's Deployment.
	locDep := getDep(m.c[mcPrimary], mcNS, render.LocalityServerName)
	var locs []*podrun.Pod
	for i := range *locDep.Spec.Replicas {
		debug, _ := localproc.FreePort()
		locs = append(locs, rp.Run(t, locDep, podrun.Options{PodName: fmt.Sprintf("%s-podrun-%d", render.LocalityServerName, i), Register: true,
			Ports: map[string]int{"http-debug": debug},
			Args:  map[string][]string{"locality": {fmt.Sprintf("--debug-addr=127.0.0.1:%d", debug)}}}))
	}
	waitPodsReady(m, locDep, rp, locs)
	t.Logf("locality server: %d replicas from the operator's Deployment: %q", len(locs), locs[0].Argv["locality"])

	// istiod, with the MeshConfig the operator rendered.
	m.writeIstiodToken()
	cm, err := m.kube[mcPrimary].CoreV1().ConfigMaps(mcNS).Get(ctx, "istio", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the rendered ConfigMap istio-system/istio: %v", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	defer scancel()
	m.istiod = startIstiod(sctx, t, localistiod.Options{
		Kubeconfig: primary.Kubeconfig, Dir: filepath.Join(env.Dir, "istiod"), ClusterID: mcPrimary,
		MeshConfig: cm.Data["mesh"], Env: m.istiodEnv(),
	})
	// istiod (and any other rendered Deployment podrun does not run) runs:
	// the test plays the Deployment controller for it, reporting every
	// generation the operator writes rolled out.
	go func() {
		for ctx.Err() == nil {
			var list appsv1.DeploymentList
			if err := m.c[mcPrimary].List(ctx, &list, client.MatchingLabels{render.LabelManagedBy: render.ManagedByValue}); err == nil {
				for i := range list.Items {
					d := &list.Items[i]
					if d.Name == render.TunnelServerName || d.Name == render.LocalityServerName || d.Status.ObservedGeneration == d.Generation {
						continue
					}
					_ = rp.SetAvailable(ctx, d, *d.Spec.Replicas)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()

	// Echo: the in-zone replica in remote1, the other in the primary.
	createEchoService(ctx, t, m.kube[mcPrimary], []workload{away})
	createEchoService(ctx, t, m.kube["remote1"], []workload{inZone})
	for cl, w := range map[string]workload{mcPrimary: away, "remote1": inZone} {
		mustCreate(t, "endpointslice default/echo-1 in "+cl, func() error {
			_, err := m.kube[cl].DiscoveryV1().EndpointSlices("default").Create(ctx, echoSlice([]workload{w}, nil), metav1.CreateOptions{})
			return err
		})
		startEchoServer(t, w.addr, echoPort)
	}

	// meshctl cluster join --tunnel --remote-kubeconfig: it creates the
	// RemoteIstio, applies the agent in the remote and waits for Ready.
	start = time.Now()
	joinLog := filepath.Join(env.Dir, "join.log")
	jf, err := os.Create(joinLog)
	if err != nil {
		t.Fatal(err)
	}
	defer jf.Close()
	join := exec.CommandContext(ctx, meshctlBin, "--kubeconfig", primary.Kubeconfig, "cluster", "join", "remote1",
		"--tunnel", "--tunnel-server", agentAddr, "--remote-kubeconfig", remote.Kubeconfig,
		"--pilot-address", mcPilotAddress, "--inject", "default", "--wait", "3m")
	join.Stdout, join.Stderr = jf, jf
	if err := join.Start(); err != nil {
		t.Fatal(err)
	}
	joined := make(chan error, 1)
	go func() { joined <- join.Wait() }()
	agDep := getDep(m.c["remote1"], render.TunnelServerNamespace, render.TunnelAgentName)
	var agents []*podrun.Pod
	for i := range *agDep.Spec.Replicas {
		agents = append(agents, rr.Run(t, agDep, podrun.Options{PodName: fmt.Sprintf("%s-podrun-%d", render.TunnelAgentName, i), Register: true,
			Args: map[string][]string{render.TunnelAgentContainer: {"--metrics-addr="}}}))
	}
	waitPodsReady(m, agDep, rr, agents)
	t.Logf("tunnel agent: %d replicas from the Deployment meshctl applied in remote1: %q", len(agents), agents[0].Argv[render.TunnelAgentContainer])
	select {
	case err := <-joined:
		if err != nil {
			t.Fatalf("meshctl cluster join: %v\n%s", err, localproc.TailFile(joinLog, 30))
		}
	case <-time.After(4 * time.Minute):
		t.Fatalf("meshctl cluster join did not finish:\n%s", localproc.TailFile(joinLog, 30))
	}
	t.Logf("meshctl cluster join --tunnel → RemoteIstio Ready in %v", time.Since(start).Round(time.Millisecond))
	m.waitRemote("remote1", v1beta1.ConditionReady, time.Minute)
	m.eventually(2*time.Minute, "Istio Ready", func() error {
		got := &v1beta1.Istio{}
		if err := m.c[mcPrimary].Get(ctx, client.ObjectKeyFromObject(ist), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1beta1.ConditionReady) {
			return fmt.Errorf("conditions: %s", mcConditions(got.Status.Conditions))
		}
		return nil
	})

	// Traffic in zone: istiod has remote1's endpoint through the tunnel and
	// gives the r1/z1 client its zone at priority 0; every RPC lands there.
	start = time.Now()
	m.eventually(2*time.Minute, "istiod EDS: the in-zone endpoint (remote1, through the tunnel) at priority 0, the other behind it", func() error {
		eps, err := m.fetchEndpoints("")
		if err != nil {
			return err
		}
		pri := map[string]uint32{}
		for _, e := range eps {
			pri[e.Locality] = e.Priority
		}
		if p, ok := pri["r1/z1"]; !ok || p != 0 || len(pri) != 2 || pri["r2/z2"] == 0 {
			return fmt.Errorf("got %v", eps)
		}
		t.Logf("istiod EDS: %v", eps)
		return nil
	})
	nodeID := "sidecar~" + mcClientAddr.String() + "~client.default~default.svc.cluster.local"
	cc := dialXDS(t, "xds:///"+echoHost+":"+itoa(echoPort), xdsBootstrap(m.istiod.GRPCAddr, nodeID, mcPrimary, "r1", "z1"))
	waitAllOn(t, cc, inZone.addr.String(), 50, time.Minute)
	t.Logf("traffic in zone %v after join; whole test %v", time.Since(start).Round(time.Millisecond), time.Since(testStart).Round(time.Millisecond))
}

// waitPodsReady waits until every started replica of d passes its
// readiness probe (a crashed one fails the test at once) and reports d
// rolled out, as the Deployment controller would.
func waitPodsReady(m *tunnelMesh, d *appsv1.Deployment, r *podrun.Runner, pods []*podrun.Pod) {
	m.t.Helper()
	m.eventually(2*time.Minute, fmt.Sprintf("%d replicas of %s/%s ready", len(pods), d.Namespace, d.Name), func() error {
		for _, p := range pods {
			if err := p.Running(); err != nil {
				m.t.Fatal(err)
			}
			if err := p.Ready(m.ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err := r.SetAvailable(m.ctx, d, int32(len(pods))); err != nil {
		m.t.Fatal(err)
	}
}
