package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	grpcxds "google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The demo: one gRPC server per zone, registered as a Pod and EndpointSlice
// of Service demo/demo in its cluster, and proxyless gRPC clients that call
// demo.demo.svc.cluster.local through istiod and count who answers.
const (
	demoNamespace = "demo"
	demoService   = "demo"
	demoPort      = 7070
	demoHost      = "demo.demo.svc.cluster.local"
	// demoRate is how many calls a client makes per second; demoWindow how
	// many recent calls its distribution is computed over.
	demoRate   = 20
	demoWindow = 40
)

// Zone is one zone of the demo, with the server that runs there.
type Zone struct {
	Cluster string     `json:"cluster"`
	Region  string     `json:"region"`
	Zone    string     `json:"zone"`
	Addr    netip.Addr `json:"addr"`
	Ready   bool       `json:"ready"`
}

// DemoZones lays out the demo over the remote clusters: two zones of one
// region in the first remote, one zone of another region in the second.
func DemoZones(remotes []string) []Zone {
	layout := []struct{ region, zone string }{{"eu-west", "eu-west-a"}, {"eu-west", "eu-west-b"}, {"us-east", "us-east-a"}}
	var zs []Zone
	for i, l := range layout {
		c := remotes[min(i/2, len(remotes)-1)]
		zs = append(zs, Zone{Cluster: c, Region: l.region, Zone: l.zone, Addr: netip.AddrFrom4([4]byte{198, 18, 10, byte(i + 1)}), Ready: true})
	}
	return zs
}

// Addrs are the addresses the demo's servers listen on.
func Addrs() []netip.Addr {
	var out []netip.Addr
	for _, z := range DemoZones([]string{"a", "b"}) {
		out = append(out, z.Addr)
	}
	return out
}

// Traffic is where one client's recent calls went.
type Traffic struct {
	Client string             `json:"client"`
	Calls  int                `json:"calls"`
	ByZone map[string]float64 `json:"byZone"`
	Errors int                `json:"errors"`
}

// Totals count every call one client made since the demo started.
type Totals struct {
	Client string `json:"client"`
	Calls  int    `json:"calls"`
	Errors int    `json:"errors"`
	// InZone counts the calls answered by a server in the client's zone.
	InZone int `json:"inZone"`
	// ByZone counts the answered calls per zone of the server.
	ByZone map[string]int `json:"byZone"`
}

// demo runs the servers and clients.
type demo struct {
	mu       sync.Mutex
	zones    []Zone
	clusters map[string]client.Client
	recent   map[string][]string // client zone -> zones (or "error") of recent calls
	totals   map[string]*Totals  // client zone -> every call so far
}

func startDemo(ctx context.Context, s *Sandbox, istiodGRPC string) (*demo, error) {
	var remotes []string
	clients := map[string]client.Client{}
	for _, c := range s.Clusters {
		cl, err := client.New(c.Config, client.Options{})
		if err != nil {
			return nil, err
		}
		clients[c.Name] = cl
		if c.Name != "primary" {
			remotes = append(remotes, c.Name)
		}
	}
	if len(remotes) == 0 {
		return nil, fmt.Errorf("the demo needs at least one remote cluster")
	}
	d := &demo{zones: DemoZones(remotes), clusters: clients, recent: map[string][]string{}, totals: map[string]*Totals{}}
	for _, c := range s.Clusters {
		if err := d.namespace(ctx, clients[c.Name]); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
	}
	for _, z := range d.zones {
		if err := d.register(ctx, clients[z.Cluster], z); err != nil {
			return nil, fmt.Errorf("cluster %s, zone %s: %w", z.Cluster, z.Zone, err)
		}
		stop, err := serve(z.Addr)
		if err != nil {
			return nil, err
		}
		s.stops = append(s.stops, stop)
	}
	// One client in the first zone of each region.
	seen := map[string]bool{}
	for _, z := range d.zones {
		if seen[z.Region] {
			continue
		}
		seen[z.Region] = true
		z := z
		cc, err := dialDemo(istiodGRPC, z)
		if err != nil {
			return nil, err
		}
		s.goRun(func(ctx context.Context) { d.call(ctx, cc, z.Zone); _ = cc.Close() })
	}
	return d, nil
}

// namespace creates the demo namespace, its default ServiceAccount (only
// the primary runs the serviceaccount controller) and the Service, in one
// cluster.
func (d *demo) namespace(ctx context.Context, c client.Client) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: demoNamespace}},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: demoService, Namespace: demoNamespace, Labels: map[string]string{"app": demoService}},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": demoService},
				Ports:    []corev1.ServicePort{{Name: "grpc", Port: demoPort, Protocol: corev1.ProtocolTCP}},
			},
		},
	}
	for _, o := range objs {
		if err := client.IgnoreAlreadyExists(c.Create(ctx, o)); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// register creates the zone's Node, the server's Pod and its EndpointSlice.
func (d *demo) register(ctx context.Context, c client.Client, z Zone) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + z.Zone, Labels: map[string]string{
		corev1.LabelTopologyRegion: z.Region, corev1.LabelTopologyZone: z.Zone}}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-" + z.Zone, Namespace: demoNamespace, Labels: map[string]string{"app": demoService}},
		Spec: corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "demo", Image: "demo",
			Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: demoPort}}}}},
	}
	for _, o := range []client.Object{node, pod} {
		if err := client.IgnoreAlreadyExists(c.Create(ctx, o)); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: z.Addr.String(), PodIPs: []corev1.PodIP{{IP: z.Addr.String()}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("pod status: %w", err)
	}
	return client.IgnoreAlreadyExists(c.Create(ctx, d.slice(z, pod)))
}

func (d *demo) slice(z Zone, pod *corev1.Pod) *discoveryv1.EndpointSlice {
	name, port, proto := "grpc", int32(demoPort), corev1.ProtocolTCP
	ready := z.Ready
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-" + z.Zone, Namespace: demoNamespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: demoService, discoveryv1.LabelManagedBy: "meshfleet-sandbox"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{z.Addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:   ptr.To("node-" + z.Zone),
			Zone:       ptr.To(z.Zone),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: demoNamespace, Name: pod.Name},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
}

// setReady marks every endpoint of zone (or of every zone in region) ready
// or not, as a failing zone would look to Kubernetes.
func (d *demo) setReady(ctx context.Context, zoneOrRegion string, ready bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	found := false
	for i := range d.zones {
		z := &d.zones[i]
		if z.Zone != zoneOrRegion && z.Region != zoneOrRegion {
			continue
		}
		found = true
		z.Ready = ready
		c := d.clusters[z.Cluster]
		es := &discoveryv1.EndpointSlice{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: "demo-" + z.Zone}, es); err != nil {
			return err
		}
		es.Endpoints[0].Conditions.Ready = &ready
		if err := c.Update(ctx, es); err != nil {
			return fmt.Errorf("zone %s: %w", z.Zone, err)
		}
	}
	if !found {
		return fmt.Errorf("no zone or region %q in the sandbox (zones: %s)", zoneOrRegion, d.zoneNames())
	}
	return nil
}

func (d *demo) zoneNames() string {
	var n []string
	for _, z := range d.zones {
		n = append(n, z.Zone)
	}
	sort.Strings(n)
	return fmt.Sprint(n)
}

// call makes demoRate calls a second until ctx ends, recording who answered.
func (d *demo) call(ctx context.Context, cc *grpc.ClientConn, from string) {
	hc := healthpb.NewHealthClient(cc)
	tick := time.NewTicker(time.Second / demoRate)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		cancel()
		to := "error"
		if err == nil {
			to = d.zoneOf(p.Addr)
		}
		d.mu.Lock()
		r := append(d.recent[from], to)
		if len(r) > demoWindow {
			r = r[len(r)-demoWindow:]
		}
		d.recent[from] = r
		t := d.totals[from]
		if t == nil {
			t = &Totals{Client: from, ByZone: map[string]int{}}
			d.totals[from] = t
		}
		t.Calls++
		switch to {
		case "error":
			t.Errors++
		case from:
			t.InZone++
			t.ByZone[to]++
		default:
			t.ByZone[to]++
		}
		d.mu.Unlock()
	}
}

func (d *demo) zoneOf(a net.Addr) string {
	host, _, _ := net.SplitHostPort(a.String())
	for _, z := range d.zones {
		if z.Addr.String() == host {
			return z.Zone
		}
	}
	return host
}

// Totals returns each client's counts since the start, sorted by client.
func (d *demo) Totals() []Totals {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Totals, 0, len(d.totals))
	for _, t := range d.totals {
		c := *t
		c.ByZone = map[string]int{}
		for z, n := range t.ByZone {
			c.ByZone[z] = n
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out
}

// Traffic is the distribution of each client's recent calls over zones.
func (d *demo) Traffic() []Traffic {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Traffic
	for from, r := range d.recent {
		t := Traffic{Client: from, Calls: len(r), ByZone: map[string]float64{}}
		for _, to := range r {
			if to == "error" {
				t.Errors++
				continue
			}
			t.ByZone[to] += 100 / float64(len(r))
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out
}

// serve runs a gRPC health server on addr.
func serve(addr netip.Addr) (func(), error) {
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, demoPort).String())
	if err != nil {
		return nil, fmt.Errorf("demo server on %s: %w (is the sandbox in its network namespace?)", addr, err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(l) }()
	return s.Stop, nil
}

// dialDemo dials the demo service through istiod as a proxyless client in zone z.
func dialDemo(istiodGRPC string, z Zone) (*grpc.ClientConn, error) {
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": istiodGRPC, "channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": fmt.Sprintf("sidecar~%s~client-%s.%s~%s.svc.cluster.local", z.Addr, z.Zone, demoNamespace, demoNamespace),
			// PROXY_CONFIG (empty is enough) makes istioctl proxy-status
			// list the client; istiod reads it from an Envoy's metadata.
			"metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": demoNamespace, "CLUSTER_ID": z.Cluster, "ISTIO_VERSION": "1.30.0",
				"PROXY_CONFIG": map[string]any{}},
			"locality": map[string]any{"region": z.Region, "zone": z.Zone},
		},
	})
	if err != nil {
		return nil, err
	}
	// The resolver is built from this bootstrap per client (each has its own
	// locality); grpc-go reads GRPC_XDS_BOOTSTRAP only once, at start.
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		return nil, fmt.Errorf("xDS resolver: %w", err)
	}
	return grpc.NewClient("xds:///"+demoHost+fmt.Sprintf(":%d", demoPort), grpc.WithResolvers(rb),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
}
