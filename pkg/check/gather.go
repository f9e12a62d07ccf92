package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/kubeconfig"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// Sources say where Gather reads from.
type Sources struct {
	// Config reaches the primary's API server.
	Config *rest.Config
	// Namespace holds the mesh's Istio and RemoteIstio resources.
	Namespace string
	// Endpoints are the components' HTTP addresses.
	Endpoints Endpoints
	// Timeout bounds each request (10 s if zero).
	Timeout time.Duration
}

// Gather reads the facts the checks look at. It never fails: what cannot
// be read is recorded in the fact's Err, so the checks can say what to do.
func Gather(ctx context.Context, src Sources) *Facts {
	if src.Timeout <= 0 {
		src.Timeout = 10 * time.Second
	}
	f := &Facts{Now: time.Now(), Namespace: src.Namespace, API: API{Host: src.Config.Host}}
	cfg := rest.CopyConfig(src.Config)
	cfg.Timeout = src.Timeout
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		f.API.Err = err.Error()
		return f
	}
	v, err := kube.Discovery().ServerVersion()
	if err != nil {
		f.API.Err = err.Error()
		return f
	}
	f.API.Version = v.GitVersion
	scheme, err := operator.Scheme()
	if err != nil {
		f.API.Err = err.Error()
		return f
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		f.API.Err = err.Error()
		return f
	}
	gatherCRDs(ctx, c, f)
	f.Operator = workload(ctx, c, meshca.Namespace, "meshfleet-operator")
	web := &http.Client{Timeout: src.Timeout}
	locality := gatherClusters(ctx, c, src.Namespace, f)
	if locality {
		gatherLocality(ctx, kube, web, src.Namespace, src.Endpoints.LocalityDebug, f)
	}
	f.Istiod = IstiodClusters(ctx, web, src.Endpoints.IstiodDebug)
	if len(tunnelled(f)) > 0 {
		f.Tunnel = ReadTunnel(ctx, web, src.Endpoints.TunnelMetrics)
	}
	return f
}

func gatherCRDs(ctx context.Context, c client.Client, f *Facts) {
	var crds apiextensionsv1.CustomResourceDefinitionList
	if err := c.List(ctx, &crds); err != nil {
		f.CRDsErr = err.Error()
		return
	}
	f.CRDs = map[string]CRD{}
	for _, crd := range crds.Items {
		est := false
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				est = true
			}
		}
		f.CRDs[crd.Name] = CRD{Established: est}
	}
}

// workload reads a Deployment; nil if it does not exist.
func workload(ctx context.Context, c client.Client, ns, name string) *Workload {
	d := &appsv1.Deployment{}
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)
	if apierrors.IsNotFound(err) {
		return nil
	}
	w := &Workload{Namespace: ns, Name: name}
	if err != nil {
		w.Err = err.Error()
		return w
	}
	return deploymentState(d)
}

func deploymentState(d *appsv1.Deployment) *Workload {
	w := &Workload{Namespace: d.Namespace, Name: d.Name, Replicas: 1, Available: d.Status.AvailableReplicas}
	if d.Spec.Replicas != nil {
		w.Replicas = *d.Spec.Replicas
	}
	return w
}

// gatherClusters reads the Istio and RemoteIstio resources and what can be
// read of each cluster; it reports whether a primary runs the locality
// server.
func gatherClusters(ctx context.Context, c client.Client, ns string, f *Facts) (locality bool) {
	var istios v1beta1.IstioList
	if err := c.List(ctx, &istios, client.InNamespace(ns)); err != nil {
		f.ClustersErr = fmt.Sprintf("listing Istio resources in %s: %v", ns, err)
		return false
	}
	var remotes v1beta1.RemoteIstioList
	if err := c.List(ctx, &remotes, client.InNamespace(ns)); err != nil {
		f.ClustersErr = fmt.Sprintf("listing RemoteIstio resources in %s: %v", ns, err)
		return false
	}
	for _, ist := range istios.Items {
		cl := Cluster{Resource: ist.Name, Name: ist.Status.ClusterName, Role: RolePrimary, Phase: string(ist.Status.Phase),
			Generation: ist.Generation, ObservedGeneration: observed(ist.Status.ObservedGeneration, ist.Status.Conditions),
			Problems: Problems(ist.Status.Conditions), Readable: true}
		if cl.Name == "" {
			cl.Name = ist.Name
		}
		if ist.Status.Certificates != nil && ist.Status.Certificates.IntermediateExpiry != nil {
			t := ist.Status.Certificates.IntermediateExpiry.Time
			cl.IntermediateExpiry = &t
		}
		readCluster(ctx, c, ns, &cl)
		locality = locality || ist.Spec.LocalityLB.Enabled
		f.Clusters = append(f.Clusters, cl)
	}
	for _, ri := range remotes.Items {
		cl := Cluster{Resource: ri.Name, Name: ri.Status.ClusterName, Role: RoleRemote, Phase: string(ri.Status.Phase),
			Connection: ri.Status.Connection, KubernetesVersion: ri.Status.KubernetesVersion,
			Generation: ri.Generation, ObservedGeneration: observed(ri.Status.ObservedGeneration, ri.Status.Conditions),
			Problems: Problems(ri.Status.Conditions)}
		if cl.Name == "" {
			cl.Name = ri.Name
		}
		if ri.Spec.KubeconfigSecretRef == nil {
			cl.ReadErr = "reached through the tunnel"
		} else if rc, err := RemoteClient(ctx, c, ns, ri.Spec.KubeconfigSecretRef.Name); err != nil {
			cl.ReadErr = err.Error()
		} else {
			cl.Readable = true
			readCluster(ctx, rc, ns, &cl)
		}
		cl.ReaderAccess = readerAccess(ctx, c, ns, cl.Name)
		f.Clusters = append(f.Clusters, cl)
	}
	return locality
}

// observed is the oldest generation any condition observed (the status's
// own observedGeneration if there are none).
func observed(status int64, conds []metav1.Condition) int64 {
	g := status
	for i, cond := range conds {
		if i == 0 || cond.ObservedGeneration < g {
			g = cond.ObservedGeneration
		}
	}
	return g
}

// Problems are the conditions that are not True (Pending aside), each as
// "Type (Reason): message".
func Problems(conds []metav1.Condition) []string {
	var out []string
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue && c.Reason != v1beta1.ReasonPending {
			out = append(out, fmt.Sprintf("%s (%s): %s", c.Type, c.Reason, c.Message))
		}
	}
	return out
}

// RemoteClient is a client of the remote cluster whose kubeconfig is in the
// Secret ns/secret, with c's scheme. Only inline credentials are used.
func RemoteClient(ctx context.Context, c client.Client, ns, secret string) (client.Client, error) {
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: secret}, s); err != nil {
		return nil, fmt.Errorf("kubeconfig Secret %s/%s: %w", ns, secret, err)
	}
	// The Secret is the cluster's, not the user's: run nothing it names.
	cfg, errs := kubeconfig.Inline(s.Data["kubeconfig"])
	if len(errs) > 0 {
		return nil, fmt.Errorf("kubeconfig Secret %s/%s is refused: %w", ns, secret, errs.ToAggregate())
	}
	cfg.Timeout = 10 * time.Second
	return client.New(cfg, client.Options{Scheme: c.Scheme()})
}

// readCluster reads a cluster's cacerts and gateway Deployments.
func readCluster(ctx context.Context, c client.Client, ns string, cl *Cluster) {
	s := &corev1.Secret{}
	cl.CA = &CACerts{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: meshca.CACertsSecretName}, s); err != nil {
		cl.CA.Err = fmt.Sprintf("reading Secret %s/%s: %v", ns, meshca.CACertsSecretName, err)
	} else {
		cl.CA.CertPEM, cl.CA.RootPEM, cl.CA.ChainPEM = s.Data["ca-cert.pem"], s.Data["root-cert.pem"], s.Data["cert-chain.pem"]
	}
	var ds appsv1.DeploymentList
	if err := c.List(ctx, &ds, client.InNamespace(render.GatewayNamespace), client.MatchingLabels{render.LabelManagedBy: render.ManagedByValue}); err != nil {
		cl.GatewaysErr = err.Error()
		return
	}
	cl.Gateways = []Workload{}
	for i := range ds.Items {
		cl.Gateways = append(cl.Gateways, *deploymentState(&ds.Items[i]))
	}
}

// readerAccess tries the credentials of istiod's remote secret for a
// cluster against that cluster, as istiod uses them (list services). nil
// when they are not inline (a token file of istiod's pod).
func readerAccess(ctx context.Context, c client.Client, ns, cluster string) *Probe {
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.RemoteSecretName(cluster)}, s); err != nil {
		// Not there (istiod's checks say so), or not ours to read: the
		// credentials cannot be tried.
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return nil
		}
		return &Probe{Err: fmt.Sprintf("reading istiod's remote secret %s/%s: %v", ns, render.RemoteSecretName(cluster), err)}
	}
	cfg, errs := kubeconfig.Inline(s.Data[cluster])
	if len(errs) > 0 {
		return nil
	}
	cfg.Timeout = 10 * time.Second
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return &Probe{Err: err.Error()}
	}
	_, err = kube.CoreV1().Services("").List(ctx, metav1.ListOptions{Limit: 1})
	if err == nil {
		return &Probe{Code: http.StatusOK}
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return &Probe{Code: int(st.Status().Code), Err: err.Error()}
	}
	return &Probe{Err: err.Error()}
}

func gatherLocality(ctx context.Context, kube kubernetes.Interface, web *http.Client, ns, debugURL string, f *Facts) {
	l := &Locality{}
	s, lease, err := health.Read(ctx, kube, ns)
	if err != nil {
		l.Verdict = health.Verdict{State: health.StateDegraded, Line: err.Error()}
	} else {
		l.Verdict = health.Judge(s, lease, f.Now)
	}
	l.Debug.URL = debugURL
	if debugURL != "" {
		u, err := withPath(debugURL, "/debug/locality")
		if err == nil {
			l.Debug.URL = u
			var body []byte
			if body, err = get(ctx, web, u); err == nil {
				err = yaml.Unmarshal(body, &l.Debug.Value)
			}
		}
		if err != nil {
			l.Debug.Err = err.Error()
		}
	}
	f.Locality = l
}

// IstiodClusters reads istiod's /debug/clusterz at base: every cluster it
// reads and whether it synced.
func IstiodClusters(ctx context.Context, web *http.Client, base string) Endpoint[[]IstiodCluster] {
	var e Endpoint[[]IstiodCluster]
	if base == "" {
		return e
	}
	u, err := withPath(base, "/debug/clusterz")
	e.URL = u
	if err == nil {
		var body []byte
		if body, err = get(ctx, web, u); err == nil {
			err = json.Unmarshal(body, &e.Value)
		}
	}
	if err != nil {
		e.Err = err.Error()
	}
	return e
}

// The tunnel server's metrics read by tunnelState.
const (
	metricAgents = "meshfleet_tunnel_agents_connected"
	metricRTT    = "meshfleet_tunnel_agent_rtt_seconds"
	metricActive = "meshfleet_tunnel_server_active"
)

// ReadTunnel reads the tunnel server's agents and RTTs from its /metrics at u.
func ReadTunnel(ctx context.Context, web *http.Client, u string) Endpoint[TunnelState] {
	e := Endpoint[TunnelState]{URL: u}
	if u == "" {
		return e
	}
	body, err := get(ctx, web, u)
	if err == nil {
		e.Value, err = ParseTunnelMetrics(strings.NewReader(string(body)))
	}
	if err != nil {
		e.Err = err.Error()
	}
	return e
}

// ParseTunnelMetrics reads the tunnel server's Prometheus exposition.
func ParseTunnelMetrics(r io.Reader) (TunnelState, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return TunnelState{}, fmt.Errorf("parsing the tunnel server's metrics: %w", err)
	}
	st := TunnelState{Active: true, Agents: map[string]int{}, RTT: map[string]map[string]time.Duration{}}
	if fam := fams[metricActive]; fam != nil {
		for _, m := range fam.GetMetric() {
			st.Active = m.GetGauge().GetValue() != 0
		}
	} else {
		return st, fmt.Errorf("no %s: is this a meshfleet tunnel server's /metrics?", metricActive)
	}
	for _, m := range fams[metricAgents].GetMetric() {
		cluster := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "cluster" {
				cluster = l.GetValue()
			}
		}
		st.Agents[cluster] += int(m.GetGauge().GetValue())
	}
	for _, m := range fams[metricRTT].GetMetric() {
		var cluster, agent string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "cluster":
				cluster = l.GetValue()
			case "agent":
				agent = l.GetValue()
			}
		}
		if st.RTT[cluster] == nil {
			st.RTT[cluster] = map[string]time.Duration{}
		}
		st.RTT[cluster][agent] = time.Duration(m.GetGauge().GetValue() * float64(time.Second))
	}
	return st, nil
}

func withPath(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return base, fmt.Errorf("%q is not a URL such as http://localhost:15014", base)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = path
	}
	return u.String(), nil
}

func get(ctx context.Context, web *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := web.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
