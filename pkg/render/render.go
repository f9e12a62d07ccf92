package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Labels meshfleet puts on every object it manages. The owner labels let a
// watch on any kind, namespaced or cluster-scoped, find the resource to
// reconcile.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByValue      = "meshfleet"
	LabelOwnerKind      = "meshfleet.io/owner-kind"
	LabelOwnerName      = "meshfleet.io/owner-name"
	LabelOwnerNamespace = "meshfleet.io/owner-namespace"
)

// Labels meshfleet sets on namespaces it does not own.
const (
	LabelInjection = "istio-injection"
	LabelNetwork   = "topology.istio.io/network"
)

// Manifest is everything one control plane consists of, in apply order.
type Manifest struct {
	// CRDs are Istio's CustomResourceDefinitions; they must be established
	// before Objects that use them are applied.
	CRDs []*unstructured.Unstructured
	// Objects are the control plane's other objects.
	Objects []*unstructured.Unstructured
	// NamespaceLabels are labels meshfleet sets on namespaces it does not own
	// (injection, network). It never creates or deletes those namespaces.
	NamespaceLabels map[string]map[string]string
}

// step is one named stage of rendering; errors say which one failed.
type step struct {
	name string
	run  func(cp *ControlPlane, m *Manifest) error
}

var steps = []step{
	{"base chart", renderBase},
	{"istiod chart", renderIstiod},
	{"remote tag services", remoteTagServices},
	{"tunnel token", mountTunnelToken},
	{"gateway charts", renderGateways},
	{"mesh chart", renderMesh},
	{"locality server", renderLocalityServer},
	{"tunnel server", renderTunnelServer},
	{"namespace labels", renderNamespaceLabels},
	{"close plain-text xDS", closePlaintextXDS},
	{"sidecar injection", dropInjectionWebhook},
	{"primary reader without Secrets", primaryReaderWithoutSecrets},
	{"owner labels", labelOwned},
	{"order", sortObjects},
}

// Render renders a control plane. It is pure: the same ControlPlane always
// gives the same Manifest.
func Render(cp *ControlPlane) (*Manifest, error) {
	m := &Manifest{NamespaceLabels: map[string]map[string]string{}}
	for _, s := range steps {
		if err := s.run(cp, m); err != nil {
			return nil, fmt.Errorf("render %s/%s: %s: %w", cp.Owner.Namespace, cp.Owner.Name, s.name, err)
		}
	}
	return m, nil
}

func renderBase(cp *ControlPlane, m *Manifest) error {
	objs, err := baseObjects(minorOf(cp.Version), cp.Namespace)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			m.CRDs = append(m.CRDs, o)
		} else {
			m.Objects = append(m.Objects, o)
		}
	}
	return nil
}

func renderIstiod(cp *ControlPlane, m *Manifest) error {
	vals, err := istiodValues(cp)
	if err != nil {
		return err
	}
	objs, err := renderObjects(minorOf(cp.Version), chartIstiod, istiodRelease, cp.Namespace, vals)
	m.Objects = append(m.Objects, objs...)
	return err
}

// renderGateways renders the gateways into a namespace of their own, which
// it renders too: the gateway chart grants each gateway's service account
// read access to every Secret of its namespace (for credentialName), so a
// gateway must never share the control plane's namespace and its cacerts.
func renderGateways(cp *ControlPlane, m *Manifest) error {
	if len(cp.Gateways) == 0 {
		return nil
	}
	if cp.GatewayNamespace == "" || cp.GatewayNamespace == cp.Namespace {
		return fmt.Errorf("the gateways need a namespace of their own, not %q", cp.GatewayNamespace)
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(cp.GatewayNamespace)
	if cp.Network != "" {
		ns.SetLabels(map[string]string{LabelNetwork: cp.Network})
	}
	m.Objects = append(m.Objects, ns)
	for _, gw := range cp.Gateways {
		objs, err := renderObjects(minorOf(cp.Version), chartGateway, gw.Name, cp.GatewayNamespace, gatewayValues(cp, gw))
		if err != nil {
			return fmt.Errorf("gateway %s: %w", gw.Name, err)
		}
		m.Objects = append(m.Objects, objs...)
	}
	return nil
}

func renderMesh(cp *ControlPlane, m *Manifest) error {
	if cp.Remote != nil {
		return nil // mesh-wide config lives in the primary, the config cluster
	}
	objs, err := renderObjects("", chartMesh, "meshfleet", cp.Namespace, meshValues(cp))
	m.Objects = append(m.Objects, objs...)
	return err
}

func renderNamespaceLabels(cp *ControlPlane, m *Manifest) error {
	set := func(ns, k, v string) {
		if m.NamespaceLabels[ns] == nil {
			m.NamespaceLabels[ns] = map[string]string{}
		}
		m.NamespaceLabels[ns][k] = v
	}
	for _, ns := range cp.InjectionNamespaces {
		set(ns, LabelInjection, "enabled")
	}
	if cp.Network != "" {
		set(cp.Namespace, LabelNetwork, cp.Network)
	}
	return nil
}

func closePlaintextXDS(cp *ControlPlane, m *Manifest) error {
	if !cp.ClosePlaintextXDS {
		return nil
	}
	for _, o := range m.Objects {
		if o.GetKind() != "Service" || (o.GetName() != IstiodName(cp) && !strings.HasPrefix(o.GetName(), "istiod-revision-tag-")) {
			continue
		}
		ports, _, err := unstructured.NestedSlice(o.Object, "spec", "ports")
		if err != nil {
			return fmt.Errorf("service %s: %w", o.GetName(), err)
		}
		kept := ports[:0]
		for _, p := range ports {
			if pm, ok := p.(map[string]any); ok && fmt.Sprint(pm["port"]) == "15010" {
				continue
			}
			kept = append(kept, p)
		}
		if err := unstructured.SetNestedSlice(o.Object, kept, "spec", "ports"); err != nil {
			return fmt.Errorf("service %s: %w", o.GetName(), err)
		}
	}
	return nil
}

func dropInjectionWebhook(cp *ControlPlane, m *Manifest) error {
	if cp.SidecarInjection {
		return nil
	}
	kept := m.Objects[:0]
	for _, o := range m.Objects {
		if o.GetKind() != "MutatingWebhookConfiguration" {
			kept = append(kept, o)
		}
	}
	m.Objects = kept
	return nil
}

// OwnerLabels returns the labels that tie an object to its owner.
func OwnerLabels(o Owner) map[string]string {
	return map[string]string{
		LabelManagedBy:      ManagedByValue,
		LabelOwnerKind:      o.Kind,
		LabelOwnerName:      o.Name,
		LabelOwnerNamespace: o.Namespace,
	}
}

func labelOwned(cp *ControlPlane, m *Manifest) error {
	add := OwnerLabels(cp.Owner)
	for _, list := range [][]*unstructured.Unstructured{m.CRDs, m.Objects} {
		for _, o := range list {
			l := o.GetLabels()
			if l == nil {
				l = map[string]string{}
			}
			for k, v := range add {
				l[k] = v
			}
			o.SetLabels(l)
		}
	}
	return nil
}

// kindOrder is the order kinds are applied in: what others depend on first
// (Helm's install order, trimmed to what the charts render).
var kindOrder = []string{
	"CustomResourceDefinition", "Namespace", "ServiceAccount", "Secret", "ConfigMap",
	"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
	"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
	"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}

func kindRank(kind string) int {
	for i, k := range kindOrder {
		if k == kind {
			return i
		}
	}
	return len(kindOrder)
}

func sortObjects(_ *ControlPlane, m *Manifest) error {
	for _, list := range [][]*unstructured.Unstructured{m.CRDs, m.Objects} {
		sort.SliceStable(list, func(i, j int) bool {
			a, b := list[i], list[j]
			if ra, rb := kindRank(a.GetKind()), kindRank(b.GetKind()); ra != rb {
				return ra < rb
			}
			if a.GetKind() != b.GetKind() {
				return a.GetKind() < b.GetKind()
			}
			if a.GetNamespace() != b.GetNamespace() {
				return a.GetNamespace() < b.GetNamespace()
			}
			return a.GetName() < b.GetName()
		})
	}
	for i := 1; i < len(m.Objects); i++ {
		if ObjectKey(m.Objects[i]) == ObjectKey(m.Objects[i-1]) {
			return fmt.Errorf("two rendered objects share the name %s", ObjectKey(m.Objects[i]))
		}
	}
	return nil
}

// ObjectKey names an object as kind/namespace/name for messages and maps.
func ObjectKey(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

// renderObjects renders a chart and decodes its documents into objects.
func renderObjects(minor, chartName, release, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	docs, err := renderChart(minor, chartName, release, namespace, values)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, doc := range docs {
		objs, err := decodeYAML(doc)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", chartName, err)
		}
		for _, o := range objs {
			if o.GetNamespace() == "" && namespaced(o.GetKind()) {
				o.SetNamespace(namespace)
			}
		}
		out = append(out, objs...)
	}
	return out, nil
}

var clusterScoped = map[string]bool{
	"CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"MutatingWebhookConfiguration": true, "ValidatingWebhookConfiguration": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
	"Namespace": true, "IngressClass": true,
}

func namespaced(kind string) bool { return !clusterScoped[kind] }

// decodeYAML splits a multi-document YAML stream into objects, skipping empty documents.
func decodeYAML(doc string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(doc)), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode %q: %w", firstLine(doc), err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document without kind or apiVersion near %q", firstLine(doc))
		}
		out = append(out, u)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
