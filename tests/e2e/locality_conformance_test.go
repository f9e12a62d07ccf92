//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/locality/rulesync"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// The locality conformance suite (issue 19). Each case is a Service laid
// out over three clusters; the suite runs it twice against one real istiod
// — once with the DestinationRules meshfleet's locality server generates
// (the real topology watcher and writer), once with the DestinationRule a
// person who knows istiod's rules would write by hand for the same intent
// (the policy below: r1 fails over to r3 first, every other region to the
// nearest region, by name, with ready endpoints; a Service's own setting
// wins) — and asserts that istiod serves the same EDS priorities to
// proxyless gRPC clients in r1, r2 and r3 either way. The hand-written
// rules are written from istiod's code:
//
//   - endpoint locality: pilot/pkg/serviceregistry/kube/controller
//     getPodLocality (pod label topology.istio.io/locality, else the legacy
//     istio-locality, else the Node's labels), pkg/model
//     SanitizeLocalityLabel, SplitLocalityLabel;
//   - which setting applies: pilot/pkg/networking/core/loadbalancer
//     GetEffectiveLbSetting (DestinationRule, then the Service's traffic
//     distribution, then MeshConfig); failover only with outlier detection;
//     priorities from applyLocalityFailover;
//   - which copy of a Service: aggregate.Controller.Services keeps the
//     first registry's, the config cluster's;
//   - DestinationRules: read from the config cluster only.
//
// One set of API servers and one istiod serve every case.

const confNS = "default"

// confPolicy is the mesh-wide policy of every case.
var confPolicy = locality.Policy{Failover: []locality.Failover{{From: "r1", To: "r3"}}}

// confNodes are the Nodes of each cluster.
var confNodes = map[string][]*corev1.Node{
	mcPrimary: {confNode("p-r1-z1", "r1", "z1", "")},
	"remote1": {
		confNode("a-r1-z1-s1", "r1", "z1", "s1"),
		confNode("a-r1-z1-s2", "r1", "z1", "s2"),
		confNode("a-r1-z2", "r1", "z2", ""),
		{ObjectMeta: metav1.ObjectMeta{Name: "a-bare"}}, // no locality labels
		{ObjectMeta: metav1.ObjectMeta{Name: "a-legacy", Labels: map[string]string{ // failure-domain labels only
			corev1.LabelFailureDomainBetaRegion: "r2", corev1.LabelFailureDomainBetaZone: "z3"}}},
	},
	"remote2": {confNode("b-r2-z3", "r2", "z3", ""), confNode("b-r3-z4", "r3", "z4", "")},
}

func confNode(name, region, zone, subzone string) *corev1.Node {
	l := map[string]string{corev1.LabelTopologyRegion: region, corev1.LabelTopologyZone: zone}
	if subzone != "" {
		l[topology.LabelSubzone] = subzone
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

// confClients are the proxyless gRPC clients asking istiod, by locality.
var confClients = []*corev3.Locality{
	{Region: "r1", Zone: "z1", SubZone: "s1"},
	{Region: "r2", Zone: "z3"},
	{Region: "r3", Zone: "z4"},
}

// confEndpoint is one Pod of a case, on a Node of a cluster.
type confEndpoint struct {
	cluster, node string
	podLabels     map[string]string
	notReady      bool
}

// confCase is one Service and the rule a person would write for it.
type confCase struct {
	name string
	// bug names the issue-19 bug the case catches on the code before the
	// fix (empty: a rule that already held).
	bug       string
	endpoints []confEndpoint
	// serviceIn lists clusters that have the Service without endpoints
	// (the clusters of endpoints have it too).
	serviceIn []string
	// change changes the Service in one cluster.
	change map[string]func(*corev1.Service)
	// remoteDR is a user's DestinationRule in remote1 for the host.
	remoteDR bool
	// hiddenDR is a user's DestinationRule in the primary for the host,
	// exported only to namespace "elsewhere": meshfleet steps aside, and
	// the clients (in default) do not see it.
	hiddenDR bool
	// noHand: the person writes no rule (a Service meshfleet leaves
	// alone), so the hand-written run has none for it.
	noHand bool
	// hand is the hand-written rule's failover ("r1>r3 r2>r1"); "" writes
	// a rule with outlier detection only.
	hand string
	// want is what istiod's rules (getPodLocality, GetEffectiveLbSetting,
	// applyLocalityFailover and its renumbering) give for the hand-written
	// rule, per client (r1/z1/s1 | r2/z3 | r3/z4): the suite checks the
	// hand-written rule against it before comparing meshfleet's.
	want string
	// duplicate is the locality istiod sends twice (the hazard meshfleet
	// must report), if any.
	duplicate string
}

var confCases = []confCase{
	{name: "subzones", want: "r1/z1/s1=0 r1/z1/s2=1 r1/z2=2 r2/z3=4 r3/z4=3 | r1/z1/s1=1 r1/z1/s2=1 r1/z2=1 r2/z3=0 r3/z4=2 | r1/z1/s1=1 r1/z1/s2=1 r1/z2=1 r2/z3=2 r3/z4=0", hand: "r1>r3 r2>r1 r3>r1", endpoints: []confEndpoint{
		{cluster: "remote1", node: "a-r1-z1-s1"}, {cluster: "remote1", node: "a-r1-z1-s2"}, {cluster: "remote1", node: "a-r1-z2"},
		{cluster: "remote2", node: "b-r2-z3"}, {cluster: "remote2", node: "b-r3-z4"},
	}},
	{name: "no-locality", want: "(none)=2 r1/z2=0 r2/z3=1 | (none)=2 r1/z2=1 r2/z3=0 | (none)=1 r1/z2=0 r2/z3=1", hand: "r1>r2 r2>r1 r3>r1", endpoints: []confEndpoint{
		{cluster: "remote1", node: "a-bare"}, {cluster: "remote1", node: "a-r1-z2"}, {cluster: "remote2", node: "b-r2-z3"},
	}},
	{name: "legacy-node-labels", want: "r1/z2=0 r2/z3=1 | r1/z2=1 r2/z3=0 | r1/z2=0 r2/z3=1", hand: "r1>r2 r2>r1 r3>r1", endpoints: []confEndpoint{
		{cluster: "remote1", node: "a-legacy"}, {cluster: "remote1", node: "a-r1-z2"},
	}},
	// Only in remote2: not in the primary, not in remote1.
	{name: "some-clusters", want: "r2/z3=1 r3/z4=0 | r2/z3=0 r3/z4=1 | r2/z3=1 r3/z4=0", hand: "r1>r3 r2>r3 r3>r2", endpoints: []confEndpoint{
		{cluster: "remote2", node: "b-r2-z3"}, {cluster: "remote2", node: "b-r3-z4"},
	}},
	{name: "all-not-ready", want: "r1/z2=0 r2/z3=1 | r1/z2=1 r2/z3=0 | r1/z2=0 r2/z3=1", hand: "r1>r2 r2>r1 r3>r1", endpoints: []confEndpoint{
		{cluster: "remote1", node: "a-r1-z2", notReady: true}, {cluster: "remote2", node: "b-r2-z3", notReady: true},
	}},
	// The Service's own target (r2) has no ready endpoint: the next region
	// of its order with one (r3).
	{name: "explicit-target-not-ready", want: "r1/z2=0 r2/z3=2 r3/z4=1 | r1/z2=1 r2/z3=0 r3/z4=2 | r1/z2=1 r2/z3=2 r3/z4=0", hand: "r1>r3 r2>r1 r3>r1",
		change: map[string]func(*corev1.Service){"remote1": annotate(locality.AnnotationFailover, "r1=r2")},
		endpoints: []confEndpoint{
			{cluster: "remote1", node: "a-r1-z2"}, {cluster: "remote2", node: "b-r2-z3", notReady: true}, {cluster: "remote2", node: "b-r3-z4"},
		}},
	// The Pod on a Node in r1 says (legacy label) it is in r3: istiod
	// places it in r3, so r1 fails over to r3, which has an endpoint.
	{name: "istio-locality-label", want: "r2/z3=1 r3/z4=0 | r2/z3=0 r3/z4=1 | r2/z3=1 r3/z4=0", bug: "legacy pod label istio-locality ignored", hand: "r1>r3 r2>r3 r3>r2", endpoints: []confEndpoint{
		{cluster: "remote1", node: "a-r1-z2", podLabels: map[string]string{topology.LabelIstioLocalityLegacy: "r3.z4"}},
		{cluster: "remote2", node: "b-r2-z3"},
	}},
	// One Pod's locality from its label ("r1/z2"), another's from its Node
	// ("r1/z2/"): istiod sends r1/z2 twice.
	{name: "both-label-sources", want: "r1/z2=0 r1/z2=0 r2/z3=1 | r1/z2=1 r1/z2=1 r2/z3=0 | r1/z2=0 r1/z2=0 r2/z3=1", bug: "duplicate locality not reported", hand: "r1>r2 r2>r1 r3>r1", duplicate: "r1/z2", endpoints: []confEndpoint{
		{cluster: "remote1", node: "a-r1-z2"},
		{cluster: "remote1", node: "a-bare", podLabels: map[string]string{topology.LabelIstioLocalityLegacy: "r1.z2"}},
		{cluster: "remote2", node: "b-r2-z3"},
	}},
	// PreferClose asked by annotation on the primary's copy: no failover
	// rule; the hand-written rule is outlier detection only.
	{name: "traffic-distribution-annotation", want: "r1/z2=0 r2/z3=1 r3/z4=1 | r1/z2=1 r2/z3=0 r3/z4=1 | r1/z2=1 r2/z3=1 r3/z4=0", bug: "annotation networking.istio.io/traffic-distribution ignored", hand: "",
		serviceIn: []string{mcPrimary},
		change:    map[string]func(*corev1.Service){mcPrimary: annotate(topology.AnnotationTrafficDistribution, "PreferClose")},
		endpoints: []confEndpoint{
			{cluster: "remote1", node: "a-r1-z2"}, {cluster: "remote2", node: "b-r2-z3"}, {cluster: "remote2", node: "b-r3-z4"},
		}},
	// PreferClose only on remote1's copy: istiod uses the primary's copy,
	// which has none, so the failover rule is what applies.
	{name: "traffic-distribution-remote-copy", want: "r1/z2=0 r2/z3=2 r3/z4=1 | r1/z2=1 r2/z3=0 r3/z4=2 | r1/z2=1 r2/z3=2 r3/z4=0", bug: "trafficDistribution taken from any cluster's copy", hand: "r1>r3 r2>r1 r3>r1",
		serviceIn: []string{mcPrimary},
		change: map[string]func(*corev1.Service){"remote1": func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferClose)
		}},
		endpoints: []confEndpoint{
			{cluster: "remote1", node: "a-r1-z2"}, {cluster: "remote2", node: "b-r2-z3"}, {cluster: "remote2", node: "b-r3-z4"},
		}},
	// A user's rule in remote1, which istiod never reads: meshfleet keeps
	// generating (and warns).
	{name: "user-rule-in-remote", want: "r1/z2=0 r2/z3=2 r3/z4=1 | r1/z2=1 r2/z3=0 r3/z4=2 | r1/z2=1 r2/z3=2 r3/z4=0", bug: "user DestinationRule in a remote skips the host", hand: "r1>r3 r2>r1 r3>r1", remoteDR: true,
		endpoints: []confEndpoint{
			{cluster: "remote1", node: "a-r1-z2"}, {cluster: "remote2", node: "b-r2-z3"}, {cluster: "remote2", node: "b-r3-z4"},
		}},
	// Services meshfleet leaves alone: without outlier detection istiod
	// gives every locality priority 0. With the namespace's Services
	// sharing one wildcard rule (run 3), each gets an empty rule of its
	// own so that the wildcard does not reach it.
	{name: "off", want: "r1/z2=0 r2/z3=0 r3/z4=0 | r1/z2=0 r2/z3=0 r3/z4=0 | r1/z2=0 r2/z3=0 r3/z4=0", noHand: true,
		change: map[string]func(*corev1.Service){"remote1": annotate(locality.AnnotationLocality, "off"), "remote2": annotate(locality.AnnotationLocality, "off")},
		endpoints: []confEndpoint{
			{cluster: "remote1", node: "a-r1-z2"}, {cluster: "remote2", node: "b-r2-z3"}, {cluster: "remote2", node: "b-r3-z4"},
		}},
	{name: "user-rule-elsewhere", want: "r1/z2=0 r2/z3=0 r3/z4=0 | r1/z2=0 r2/z3=0 r3/z4=0 | r1/z2=0 r2/z3=0 r3/z4=0", noHand: true, hiddenDR: true,
		endpoints: []confEndpoint{
			{cluster: "remote1", node: "a-r1-z2"}, {cluster: "remote2", node: "b-r2-z3"}, {cluster: "remote2", node: "b-r3-z4"},
		}},
}

func annotate(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func (c confCase) service() string { return "c-" + c.name }
func (c confCase) host() string    { return c.service() + "." + confNS + ".svc.cluster.local" }
func (c confCase) edsName() string { return fmt.Sprintf("outbound|%d||%s", echoPort, c.host()) }

var destinationRuleGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}

// TestLocalityConformance runs confCases as the comment at the top of this
// file says, prints the table of priorities (case, client, meshfleet's,
// hand-written) and fails each case where they differ, where the
// hand-written rule does not give what istiod's rules say (the premise), or
// where a duplicate locality or a user's rule in a remote is not reported.
func TestLocalityConformance(t *testing.T) {
	began := time.Now()
	env := testenv.Start(t,
		localcluster.ClusterOptions{Name: mcPrimary},
		localcluster.ClusterOptions{Name: "remote1"},
		localcluster.ClusterOptions{Name: "remote2"},
	)
	ctx, cancel := context.WithTimeout(testenv.Context(t), 5*time.Minute)
	t.Cleanup(cancel)
	kube := map[string]kubernetes.Interface{}
	cfgs := map[string]*rest.Config{}
	for name, c := range env.Clusters {
		kube[name], cfgs[name] = kubernetes.NewForConfigOrDie(c.Config), c.Config
		mustCreate(t, "serviceaccount default/default in "+name, func() error {
			_, err := kube[name].CoreV1().ServiceAccounts(confNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			return err
		})
		for _, n := range confNodes[name] {
			mustCreate(t, "node "+n.Name+" in "+name, func() error {
				_, err := kube[name].CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
				return err
			})
		}
	}
	// Istio's CRDs: in the primary (istiod's config cluster) and in
	// remote1, where a user keeps a DestinationRule.
	for _, name := range []string{mcPrimary, "remote1"} {
		if err := localistiod.InstallCRDs(ctx, cfgs[name]); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, "namespace istio-system", func() error {
		_, err := kube[mcPrimary].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mcNS}}, metav1.CreateOptions{})
		return err
	})
	ip := 1
	for _, c := range confCases {
		createConfCase(ctx, t, kube, cfgs, c, &ip)
	}
	// istiod reads the remotes through remote secrets (admin kubeconfigs).
	for _, r := range mcRemotes {
		kc, err := os.ReadFile(env.Cluster(r).Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-" + r, Namespace: mcNS,
				Labels: map[string]string{render.LabelMultiCluster: "true"}, Annotations: map[string]string{render.AnnotationClusterName: r}},
			Data: map[string][]byte{r: kc},
		}
		mustCreate(t, "remote secret of "+r, func() error {
			_, err := kube[mcPrimary].CoreV1().Secrets(mcNS).Create(ctx, s, metav1.CreateOptions{})
			return err
		})
	}
	istiod := startIstiod(ctx, t, localistiod.Options{
		Kubeconfig: env.Cluster(mcPrimary).Kubeconfig, Dir: filepath.Join(env.Dir, "istiod"), ClusterID: mcPrimary,
		MeshConfig: "localityLbSetting:\n  enabled: true\n",
	})
	t.Logf("3 API servers, %d cases and istiod up after %v", len(confCases), time.Since(began).Round(time.Millisecond))

	// Every endpoint has reached istiod (not-ready ones too: istiod sends
	// them to proxyless gRPC clients, marked unhealthy).
	wantEndpoints := map[string]int{}
	for _, c := range confCases {
		wantEndpoints[c.name] = len(c.endpoints)
	}
	testenv.Eventually(t, 60*time.Second, "istiod has every case's endpoints", func() error {
		got, err := confFetch(ctx, istiod.GRPCAddr, confClients[0])
		if err != nil {
			return err
		}
		for _, c := range confCases {
			if n := got[c.name].endpoints; n != wantEndpoints[c.name] {
				return fmt.Errorf("%s: %d endpoints, want %d", c.name, n, wantEndpoints[c.name])
			}
		}
		return nil
	})

	// Run 1: the hand-written rules, in the primary (the config cluster).
	dyn := dynamic.NewForConfigOrDie(cfgs[mcPrimary]).Resource(destinationRuleGVR).Namespace(confNS)
	for _, c := range confCases {
		if c.noHand {
			continue
		}
		if _, err := dyn.Create(ctx, handRule(c), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the hand-written DestinationRule of %s: %v", c.name, err)
		}
	}
	want := map[string]string{}
	for _, c := range confCases {
		want[c.name] = c.want
	}
	hand := confSettleLike(ctx, t, istiod.GRPCAddr, want)
	for _, c := range confCases {
		if hand[c.name] != c.want {
			t.Errorf("%s: premise: with the hand-written rule istiod serves %s, but istiod's rules give %s", c.name, hand[c.name], c.want)
		}
	}

	// Run 2: meshfleet's locality server (real watcher and writer) over the
	// three clusters, the hand-written rules gone.
	for _, c := range confCases {
		if c.noHand {
			continue
		}
		if err := dyn.Delete(ctx, "hand-"+c.service(), metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting the hand-written DestinationRule of %s: %v", c.name, err)
		}
	}
	ls := startLocalityServer(t, localityServerOptions{primaryCluster: mcPrimary, clusters: cfgs, policy: confPolicy})
	var decisions map[string]locality.Decision
	testenv.Eventually(t, 60*time.Second, "the locality server has written its rules", func() error {
		st := ls.State()
		decisions = map[string]locality.Decision{}
		generated := 0
		for _, d := range st.Decisions {
			decisions[d.Service] = d
			if d.Rule != nil {
				generated++
			}
		}
		for _, c := range confCases {
			if _, ok := decisions[confNS+"/"+c.service()]; !ok {
				return fmt.Errorf("no decision for %s yet", c.service())
			}
		}
		if !st.Leader || st.Rules != generated || st.LastWrite == nil {
			return fmt.Errorf("leader %v, %d rules written of %d", st.Leader, st.Rules, generated)
		}
		return nil
	})
	mesh := confSettleLike(ctx, t, istiod.GRPCAddr, hand)

	// The table, then the verdicts.
	var b strings.Builder
	fmt.Fprintf(&b, "EDS priorities istiod serves proxyless gRPC clients, policy r1→r3 first:\n")
	fmt.Fprintf(&b, "%-33s %-9s %-45s %-45s %s\n", "case", "client", "meshfleet's rules", "hand-written rule", "same")
	for _, c := range confCases {
		m, h := strings.Split(mesh[c.name], " | "), strings.Split(hand[c.name], " | ")
		for i, loc := range confClients {
			name := ""
			if i == 0 {
				name = c.name
			}
			fmt.Fprintf(&b, "%-33s %-9s %-45s %-45s %v\n", name, strings.TrimRight(loc.Region+"/"+loc.Zone+"/"+loc.SubZone, "/"), at(m, i), at(h, i), at(m, i) == at(h, i))
		}
	}
	t.Log("\n" + b.String())
	state := ls.State()
	for _, c := range confCases {
		d := decisions[confNS+"/"+c.service()]
		t.Logf("%s: meshfleet %s", c.name, describeDecision(d))
		if mesh[c.name] != hand[c.name] {
			t.Errorf("%s (%s): istiod serves %s with meshfleet's rules, %s with the hand-written rule", c.name, c.bug, mesh[c.name], hand[c.name])
		}
		if c.duplicate != "" {
			if first, _, _ := strings.Cut(hand[c.name], " | "); strings.Count(first, c.duplicate+"=") < 2 {
				t.Errorf("%s: premise: istiod should send %s twice, got %s", c.name, c.duplicate, hand[c.name])
			}
			found := slices.ContainsFunc(state.DuplicateLocality, func(p rulesync.ServiceProblem) bool { return p.Service == confNS+"/"+c.service() })
			if !found || len(d.DuplicateLocalities) == 0 || !strings.Contains(d.DuplicateLocalities[0], "locality "+c.duplicate+" ") {
				t.Errorf("%s (%s): the locality server does not report the duplicate locality %s (debug state: %v; decision: %v)", c.name, c.bug, c.duplicate, state.DuplicateLocality, d.DuplicateLocalities)
			}
		} else if len(d.DuplicateLocalities) > 0 {
			t.Errorf("%s: duplicate locality reported where istiod sends none: %v", c.name, d.DuplicateLocalities)
		}
		if c.remoteDR && !slices.ContainsFunc(d.Warnings, func(w string) bool { return strings.Contains(w, "istiod ignores it") }) {
			t.Errorf("%s: no warning that istiod ignores the user's rule in remote1: %v", c.name, d.Warnings)
		}
	}
	// The published health (what meshctl status reads) names the service.
	testenv.Eventually(t, 30*time.Second, "the published locality health to name the duplicate locality", func() error {
		sum, lease, err := health.Read(ctx, kube[mcPrimary], mcNS)
		if err != nil {
			return err
		}
		v := health.Judge(sum, lease, time.Now())
		if !strings.Contains(v.Line, confNS+"/c-both-label-sources") {
			return fmt.Errorf("%s: %s", v.State, v.Line)
		}
		t.Logf("published locality health: %s: %s", v.State, v.Line)
		return nil
	})

	// The hazard as a real proxyless client meets it: grpc-go's xDS
	// client rejects the EDS response with the duplicate locality, so the
	// channel has no endpoints; the client of a case without one gets its
	// endpoints (and fails only to connect: nothing listens on them).
	for _, c := range confCases {
		if c.duplicate == "" && c.name != "subzones" {
			continue
		}
		cc := dialXDS(t, "xds:///"+c.host()+":"+itoa(echoPort), xdsBootstrap(istiod.GRPCAddr, "sidecar~198.18.30.251~grpc.default~default.svc.cluster.local", mcPrimary, "r1", "z1"))
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		t.Logf("%s: a grpc-go xDS client's RPC: %v", c.name, err)
		gotEndpoints := err != nil && strings.Contains(err.Error(), "dial tcp 198.18.30.")
		if gotEndpoints != (c.duplicate == "") {
			t.Errorf("%s: the grpc-go client got endpoints: %v, want %v (RPC error %v)", c.name, gotEndpoints, c.duplicate == "", err)
		}
	}
	// istiod logs grpc-go's NACK, with grpc-go's reason.
	testenv.Eventually(t, 10*time.Second, "istiod to log grpc-go's NACK of the duplicate locality", func() error {
		b, err := os.ReadFile(istiod.LogPath)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "duplicate locality") {
				t.Logf("istiod: %s", line)
				return nil
			}
		}
		return fmt.Errorf("no line with \"duplicate locality\" in %s", istiod.LogPath)
	})

	// Run 3: the namespace's Services share one wildcard rule where three
	// or more would get the same policy (GroupMin 3); every other Service
	// keeps its own, and a Service left alone gets an empty one that keeps
	// the wildcard from it. istiod must still serve every case as the
	// hand-written rules do.
	ls.Stop()
	grouping := startLocalityServer(t, localityServerOptions{primaryCluster: mcPrimary, clusters: cfgs, policy: confPolicy, groupMin: 3})
	testenv.Eventually(t, 60*time.Second, "the server with GroupMin 3 has written its rules", func() error {
		st := grouping.State()
		written := map[string]bool{}
		for _, d := range st.Decisions {
			if d.Rule != nil {
				written[d.Rule.Metadata.Name] = true
			}
		}
		if !written[rulesync.GroupName(confNS)] {
			return fmt.Errorf("no namespace rule %s among %d rules", rulesync.GroupName(confNS), len(written))
		}
		for _, c := range confCases {
			if d := decisionOf(st.Decisions, confNS+"/"+c.service()); c.noHand && (d.Rule == nil || d.Rule.Spec.GetTrafficPolicy() != nil) {
				return fmt.Errorf("%s: no empty rule of its own: %s", c.name, describeDecision(d))
			}
		}
		if !st.Leader || st.Rules != len(written) {
			return fmt.Errorf("leader %v, %d rules live of %d", st.Leader, st.Rules, len(written))
		}
		return nil
	})
	// istiod holds exactly those rules (run 2's per-Service rules of the
	// grouped Services gone), then its answers settle: until then they may
	// still be run 2's, which equal the hand-written ones too.
	testenv.Eventually(t, 30*time.Second, "istiod to hold the grouping server's rules", func() error {
		want := map[string]bool{}
		for _, d := range grouping.State().Decisions {
			if d.Rule != nil {
				want[d.Rule.Metadata.Namespace+"/"+d.Rule.Metadata.Name] = true
			}
		}
		got, err := framework.GeneratedRules(ctx, istiod.HTTPAddr)
		if err != nil {
			return err
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("istiod holds %v, the server wrote %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
		return nil
	})
	grouped := confSettle(ctx, t, istiod.GRPCAddr)
	for _, d := range grouping.State().Decisions {
		if d.Rule != nil && strings.HasPrefix(d.Service, confNS+"/c-") {
			t.Logf("grouped: %s: rule %s (%s)", d.Service, d.Rule.Metadata.Name, describeDecision(d))
		}
	}
	for _, c := range confCases {
		if grouped[c.name] != hand[c.name] {
			t.Errorf("%s: with the namespace rule istiod serves %s, with the hand-written rule %s", c.name, grouped[c.name], hand[c.name])
		}
	}
	t.Logf("wall time %v", time.Since(began).Round(time.Millisecond))
}

// decisionOf is the decision for Service key (the zero decision if none).
func decisionOf(ds []locality.Decision, key string) locality.Decision {
	for _, d := range ds {
		if d.Service == key {
			return d
		}
	}
	return locality.Decision{}
}

// createConfCase creates a case's Services, Pods and EndpointSlices, and
// its user rule in remote1.
func createConfCase(ctx context.Context, t *testing.T, kube map[string]kubernetes.Interface, cfgs map[string]*rest.Config, c confCase, ip *int) {
	t.Helper()
	name := c.service()
	byCluster := map[string][]confEndpoint{}
	for _, e := range c.endpoints {
		byCluster[e.cluster] = append(byCluster[e.cluster], e)
	}
	clusters := slices.Clone(c.serviceIn)
	for cl := range byCluster {
		if !slices.Contains(clusters, cl) {
			clusters = append(clusters, cl)
		}
	}
	sort.Strings(clusters)
	sel := map[string]string{"app": name}
	for _, cl := range clusters {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: confNS, Labels: sel},
			Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{
				Name: "grpc", Port: echoPort, Protocol: corev1.ProtocolTCP, AppProtocol: ptr("grpc"),
			}}},
		}
		if f := c.change[cl]; f != nil {
			f(svc)
		}
		mustCreate(t, "service "+name+" in "+cl, func() error {
			_, err := kube[cl].CoreV1().Services(confNS).Create(ctx, svc, metav1.CreateOptions{})
			return err
		})
		eps := byCluster[cl]
		if len(eps) == 0 {
			continue
		}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: confNS, Labels: map[string]string{
				discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "meshfleet-e2e"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(echoPort)), Protocol: ptr(corev1.ProtocolTCP), AppProtocol: ptr("grpc")}},
		}
		for i, e := range eps {
			podName := fmt.Sprintf("%s-%d", name, i)
			addr := fmt.Sprintf("198.18.30.%d", *ip)
			*ip++
			labels := map[string]string{"app": name}
			for k, v := range e.podLabels {
				labels[k] = v
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: confNS, Labels: labels},
				Spec: corev1.PodSpec{NodeName: e.node, Containers: []corev1.Container{{
					Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: echoPort}},
				}}},
			}
			ready := corev1.ConditionTrue
			if e.notReady {
				ready = corev1.ConditionFalse
			}
			mustCreate(t, "pod "+podName+" in "+cl, func() error {
				created, err := kube[cl].CoreV1().Pods(confNS).Create(ctx, pod, metav1.CreateOptions{})
				if err != nil {
					return err
				}
				created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: addr, PodIPs: []corev1.PodIP{{IP: addr}}, HostIP: "127.0.0.1",
					Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}
				_, err = kube[cl].CoreV1().Pods(confNS).UpdateStatus(ctx, created, metav1.UpdateOptions{})
				return err
			})
			// As the EndpointSlice controller writes it: the zone is the
			// Node's topology.kubernetes.io/zone label, if any.
			var zone *string
			for _, n := range confNodes[cl] {
				if z, ok := n.Labels[corev1.LabelTopologyZone]; ok && n.Name == e.node {
					zone = ptr(z)
				}
			}
			isReady := !e.notReady
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{addr},
				Conditions: discoveryv1.EndpointConditions{Ready: &isReady, Serving: &isReady, Terminating: ptr(false)},
				NodeName:   ptr(e.node), Zone: zone,
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: confNS, Name: podName},
			})
		}
		mustCreate(t, "endpointslice "+slice.Name+" in "+cl, func() error {
			_, err := kube[cl].DiscoveryV1().EndpointSlices(confNS).Create(ctx, slice, metav1.CreateOptions{})
			return err
		})
	}
	if c.hiddenDR {
		// The user means: r1 fails over to r2, for clients in "elsewhere".
		dr := outlierRule("users-"+name, c.host(), "r1>r2")
		dr.Object["spec"].(map[string]any)["exportTo"] = []any{"elsewhere"}
		if _, err := dynamic.NewForConfigOrDie(cfgs[mcPrimary]).Resource(destinationRuleGVR).Namespace(confNS).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the user's DestinationRule for %s in %s: %v", name, mcPrimary, err)
		}
	}
	if c.remoteDR {
		// The user means: r1 fails over to r2 (istiod never reads it).
		dr := outlierRule("users-"+name, c.host(), "r1>r2")
		if _, err := dynamic.NewForConfigOrDie(cfgs["remote1"]).Resource(destinationRuleGVR).Namespace(confNS).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the user's DestinationRule for %s in remote1: %v", name, err)
		}
	}
}

// handRule is the DestinationRule a person writes for the case.
func handRule(c confCase) *unstructured.Unstructured {
	return outlierRule("hand-"+c.service(), c.host(), c.hand)
}

// outlierRule is a DestinationRule with meshfleet's default outlier
// detection and, if failover ("r1>r3 r2>r1") is not empty, that failover.
func outlierRule(name, host, failover string) *unstructured.Unstructured {
	od := locality.DefaultOutlierDetection()
	tp := map[string]any{"outlierDetection": map[string]any{
		"consecutive5xxErrors": int64(od.Consecutive5xxErrors),
		"interval":             od.Interval.Duration.String(),
		"baseEjectionTime":     od.BaseEjectionTime.Duration.String(),
		"maxEjectionPercent":   int64(od.MaxEjectionPercent),
	}}
	if failover != "" {
		var fs []any
		for _, f := range strings.Fields(failover) {
			from, to, _ := strings.Cut(f, ">")
			fs = append(fs, map[string]any{"from": from, "to": to})
		}
		tp["loadBalancer"] = map[string]any{"localityLbSetting": map[string]any{"enabled": true, "failover": fs}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"metadata": map[string]any{"name": name, "namespace": confNS},
		"spec":     map[string]any{"host": host, "trafficPolicy": tp},
	}}
}

// confEDS is what istiod served one client for one case.
type confEDS struct {
	text      string // "r1/z2=0 r3/z4=1", localities in response order
	endpoints int
}

// confFetch asks istiod, over one ADS stream as a proxyless gRPC node at
// loc, for every case's ClusterLoadAssignment.
func confFetch(ctx context.Context, xdsAddr string, loc *corev3.Locality) (map[string]confEDS, error) {
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	md, _ := structpb.NewStruct(map[string]any{"GENERATOR": "grpc", "NAMESPACE": confNS, "CLUSTER_ID": mcPrimary, "ISTIO_VERSION": istioVersion})
	var names []string
	byName := map[string]string{}
	for _, c := range confCases {
		names = append(names, c.edsName())
		byName[c.edsName()] = c.name
	}
	node := &corev3.Node{Id: "sidecar~198.18.30.250~client.default~default.svc.cluster.local", Metadata: md, Locality: loc}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: edsType, ResourceNames: names}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	out := map[string]confEDS{}
	for _, r := range resp.Resources {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			return nil, err
		}
		var parts []string
		n := 0
		for _, le := range cla.Endpoints {
			l := le.GetLocality()
			key := strings.TrimRight(l.GetRegion()+"/"+l.GetZone()+"/"+l.GetSubZone(), "/")
			if key == "" {
				key = "(none)"
			}
			parts = append(parts, fmt.Sprintf("%s=%d", key, le.Priority))
			n += len(le.LbEndpoints)
		}
		sort.Strings(parts)
		out[byName[cla.ClusterName]] = confEDS{text: strings.Join(parts, " "), endpoints: n}
	}
	return out, nil
}

// confAll is every case's priorities for every client, one string per case.
func confAll(ctx context.Context, xdsAddr string) (map[string]string, error) {
	out := map[string]string{}
	for i, loc := range confClients {
		got, err := confFetch(ctx, xdsAddr, loc)
		if err != nil {
			return nil, err
		}
		for _, c := range confCases {
			if i > 0 {
				out[c.name] += " | "
			}
			out[c.name] += orNone(got[c.name].text)
		}
	}
	return out, nil
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "?"
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// confSettle polls until istiod's answers stop changing (the same for 3 s)
// and returns them: a rule change reaches a new stream within istiod's
// debounce (100 ms to 10 s).
func confSettle(ctx context.Context, t *testing.T, xdsAddr string) map[string]string {
	t.Helper()
	var last map[string]string
	var since time.Time
	testenv.Eventually(t, 60*time.Second, "istiod's answers to settle", func() error {
		got, err := confAll(ctx, xdsAddr)
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(last) {
			last, since = got, time.Now()
		}
		if time.Since(since) < 3*time.Second {
			return fmt.Errorf("changed %v ago", time.Since(since).Round(time.Millisecond))
		}
		return nil
	})
	return last
}

// confSettleLike polls until istiod's answers equal want (every case), or
// else until they settle, and returns them.
func confSettleLike(ctx context.Context, t *testing.T, xdsAddr string, want map[string]string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		got, err := confAll(ctx, xdsAddr)
		if err == nil && fmt.Sprint(got) == fmt.Sprint(want) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
	return confSettle(ctx, t, xdsAddr)
}

// describeDecision is a one-line summary of what meshfleet decided.
func describeDecision(d locality.Decision) string {
	var parts []string
	switch {
	case d.Skipped != "":
		parts = append(parts, "skipped: "+d.Skipped)
	case d.Rule != nil && d.Rule.Spec.GetTrafficPolicy().GetLoadBalancer().GetLocalityLbSetting() != nil:
		var fs []string
		for _, f := range d.Rule.Spec.GetTrafficPolicy().GetLoadBalancer().GetLocalityLbSetting().GetFailover() {
			fs = append(fs, f.GetFrom()+">"+f.GetTo())
		}
		parts = append(parts, "failover "+strings.Join(fs, " "))
	case d.Rule != nil:
		parts = append(parts, "outlier detection only")
	}
	for _, w := range d.Warnings {
		parts = append(parts, "warning: "+w)
	}
	for _, x := range d.DuplicateLocalities {
		parts = append(parts, "hazard: "+x)
	}
	return strings.Join(parts, "; ")
}
