// Package members reads the locality server's member clusters from the mesh
// itself: the primary's Istio resource and its RemoteIstio resources, the
// way the operator reaches them (pkg/operator/remoteistio, connect.go).
//
//   - The primary is one member, reached with the locality server's own
//     kubeconfig (--mesh-kubeconfig); its name is the Istio resource's
//     spec.clusterName, else the resource's name.
//   - Each RemoteIstio joining that Istio resource (spec.istioRef, or the only
//     Istio in the namespace) is one member, named spec.clusterName, else the
//     resource's name. It is reached through its kubeconfig Secret
//     (spec.kubeconfigSecretRef, key "kubeconfig"), or, without one, through
//     the tunnel at <tunnel>/clusters/<name> with the primary credentials of
//     the locality server (the tunnel impersonates it in the remote).
//   - A RemoteIstio being deleted is no member any more (the operator deletes
//     istiod's remote secret first, so istiod forgets it at once too).
//   - spec.localityLB.failover of the Istio resource is the explicit
//     failover order of the locality policy.
//
// Resolve is pure (unit-tested); Watcher keeps informers on the Istio and
// RemoteIstio resources in the primary, reads the kubeconfig Secrets they
// name one by one (every SecretPoll, and on each change), and calls back
// with each new Mesh.
package members

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	inlinekc "github.com/meshfleet/meshfleet/pkg/kubeconfig"
	"github.com/meshfleet/meshfleet/pkg/locality"
	"github.com/meshfleet/meshfleet/pkg/topology"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// Connections of a member.
const (
	ConnectionPrimary = "Primary"
	ConnectionDirect  = v1beta1.ConnectionDirect
	ConnectionTunnel  = v1beta1.ConnectionTunnel
)

// Tunnel is how tunnelled remotes are reached: cluster C at URL/clusters/C,
// the server's certificate verified with CAData.
type Tunnel struct {
	URL    string
	CAData []byte
	// TokenFile, when set, holds the locality server's token for the
	// tunnel's audience (a projected service-account token); the tunnel
	// refuses tokens for the API server's own audience.
	TokenFile string
}

// Member is one member cluster and how it is reached.
type Member struct {
	Name string `json:"name"`
	// Connection is Primary, Direct (kubeconfig Secret) or Tunnel.
	Connection string `json:"connection"`
	// Source names what the connection comes from (the Secret, the tunnel URL).
	Source string       `json:"source,omitempty"`
	Config *rest.Config `json:"-"`
}

// Mesh is what the locality server takes from the mesh.
type Mesh struct {
	// Istio is the Istio resource, namespace/name.
	Istio string `json:"istio"`
	// Members are the member clusters, sorted by name.
	Members []Member `json:"members"`
	// Failover is the Istio resource's spec.localityLB.failover.
	Failover []locality.Failover `json:"failover,omitempty"`
	// Problems name RemoteIstios left out, why, and the fix.
	Problems []string `json:"problems,omitempty"`
	// Unreachable are the clusters of RemoteIstios that join this mesh but
	// cannot be reached now (kubeconfig Secret missing or unusable, no
	// tunnel), sorted: members that have not synced, to the locality
	// server, so their rules are held rather than withdrawn.
	Unreachable []string `json:"unreachable,omitempty"`
}

// Configs returns the members' client configs by name.
func (m *Mesh) Configs() map[string]*rest.Config {
	out := make(map[string]*rest.Config, len(m.Members))
	for _, mb := range m.Members {
		out[mb.Name] = mb.Config
	}
	return out
}

// Key fingerprints the mesh: equal keys mean equal members (names and
// connections) and failover order.
func (m *Mesh) Key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", m.Istio)
	for _, mb := range m.Members {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", mb.Name, mb.Connection, topology.ConfigKey(mb.Config))
	}
	for _, f := range m.Failover {
		fmt.Fprintf(h, "%s>%s\x00", f.From, f.To)
	}
	for _, u := range m.Unreachable {
		fmt.Fprintf(h, "!%s\x00", u)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Options says where the mesh is and how remotes are reached.
type Options struct {
	// Namespace holds the Istio and RemoteIstio resources; istio-system if empty.
	Namespace string
	// Istio names the Istio resource; empty means the only one in Namespace
	// (of several, the oldest, as the operator decides).
	Istio string
	// Tunnel reaches RemoteIstios without a kubeconfig Secret; nil leaves
	// them out with a problem that says so.
	Tunnel *Tunnel
}

func (o Options) namespace() string {
	if o.Namespace == "" {
		return "istio-system"
	}
	return o.Namespace
}

// Resolve computes the Mesh from the primary's client config, the Istio
// and RemoteIstio resources of the namespace and its Secrets (by name). It
// fails only when no Istio resource can be chosen; a RemoteIstio that
// cannot be reached is left out and named in Problems.
func Resolve(primary *rest.Config, istios []v1beta1.Istio, remotes []v1beta1.RemoteIstio, secrets map[string]*corev1.Secret, opts Options) (*Mesh, error) {
	ns := opts.namespace()
	ist, err := chooseIstio(istios, ns, opts.Istio)
	if err != nil {
		return nil, err
	}
	primaryName := orDefault(ist.Spec.ClusterName, ist.Name)
	m := &Mesh{
		Istio:   ist.Namespace + "/" + ist.Name,
		Members: []Member{{Name: primaryName, Connection: ConnectionPrimary, Source: primary.Host, Config: primary}},
	}
	for _, f := range ist.Spec.LocalityLB.Failover {
		m.Failover = append(m.Failover, locality.Failover{From: f.From, To: f.To})
	}
	seen := map[string]string{primaryName: "the Istio resource " + m.Istio}
	rs := append([]v1beta1.RemoteIstio(nil), remotes...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	for i := range rs {
		ri := &rs[i]
		if ri.Namespace != "" && ri.Namespace != ns {
			continue
		}
		if ri.DeletionTimestamp != nil {
			continue
		}
		if ref := ri.Spec.IstioRef; ref != "" && ref != ist.Name {
			continue // joins another Istio resource
		}
		if ri.Spec.IstioRef == "" && len(istiosIn(istios, ns)) > 1 {
			m.Problems = append(m.Problems, fmt.Sprintf("RemoteIstio %s/%s: namespace %s holds several Istio resources and spec.istioRef is not set; set it to %q to make the cluster a member", ns, ri.Name, ns, ist.Name))
			continue
		}
		name := orDefault(ri.Spec.ClusterName, ri.Name)
		if by, dup := seen[name]; dup {
			m.Problems = append(m.Problems, fmt.Sprintf("RemoteIstio %s/%s: cluster name %q is already used by %s; give it another spec.clusterName", ns, ri.Name, name, by))
			continue
		}
		mb, problem := remoteMember(primary, ri, name, secrets, opts.Tunnel)
		if problem != "" {
			m.Problems = append(m.Problems, fmt.Sprintf("RemoteIstio %s/%s (cluster %s): %s", ns, ri.Name, name, problem))
			m.Unreachable = append(m.Unreachable, name)
			seen[name] = "RemoteIstio " + ns + "/" + ri.Name
			continue
		}
		seen[name] = "RemoteIstio " + ns + "/" + ri.Name
		m.Members = append(m.Members, mb)
	}
	sort.Slice(m.Members, func(i, j int) bool { return m.Members[i].Name < m.Members[j].Name })
	sort.Strings(m.Unreachable)
	return m, nil
}

// remoteMember reaches a remote as the operator does: its kubeconfig
// Secret, else the tunnel.
func remoteMember(primary *rest.Config, ri *v1beta1.RemoteIstio, name string, secrets map[string]*corev1.Secret, tun *Tunnel) (Member, string) {
	if ref := ri.Spec.KubeconfigSecretRef; ref != nil {
		s := secrets[ref.Name]
		if s == nil {
			return Member{}, fmt.Sprintf("spec.kubeconfigSecretRef: Secret %s not found; create it with the cluster's kubeconfig under the key %q", ref.Name, v1beta1.KubeconfigSecretKey)
		}
		data, ok := s.Data[v1beta1.KubeconfigSecretKey]
		if !ok {
			return Member{}, fmt.Sprintf("spec.kubeconfigSecretRef: Secret %s has no key %q; put the cluster's kubeconfig there", ref.Name, v1beta1.KubeconfigSecretKey)
		}
		cfg, errs := inlinekc.Inline(data)
		if len(errs) > 0 {
			return Member{}, fmt.Sprintf("spec.kubeconfigSecretRef: the kubeconfig in Secret %s, key %q, is refused: %v", ref.Name, v1beta1.KubeconfigSecretKey, errs.ToAggregate())
		}
		return Member{Name: name, Connection: ConnectionDirect, Source: "Secret " + ri.Namespace + "/" + ref.Name, Config: cfg}, ""
	}
	if tun == nil || tun.URL == "" {
		return Member{}, "spec.kubeconfigSecretRef is not set and the locality server runs without a tunnel (no tunnel URL configured); name a Secret with the remote cluster's kubeconfig, or give the locality server the tunnel's URL and CA"
	}
	cfg := tunnel.ClientConfig(primary, tun.URL, tun.CAData, tun.TokenFile, name)
	return Member{Name: name, Connection: ConnectionTunnel, Source: cfg.Host, Config: cfg}, ""
}

// chooseIstio returns the named Istio resource, or the only one (the
// oldest of several) in ns.
func chooseIstio(istios []v1beta1.Istio, ns, name string) (*v1beta1.Istio, error) {
	in := istiosIn(istios, ns)
	if name != "" {
		for _, ist := range in {
			if ist.Name == name {
				return ist, nil
			}
		}
		return nil, fmt.Errorf("no Istio resource %s/%s; create it, or name an existing one", ns, name)
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("no Istio resource in namespace %s; install the mesh first (meshctl install), or name the namespace that holds it", ns)
	}
	sort.Slice(in, func(i, j int) bool {
		a, b := in[i].CreationTimestamp, in[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return in[i].Name < in[j].Name
	})
	return in[0], nil
}

func istiosIn(istios []v1beta1.Istio, ns string) []*v1beta1.Istio {
	var out []*v1beta1.Istio
	for i := range istios {
		if istios[i].Namespace == "" || istios[i].Namespace == ns {
			if istios[i].DeletionTimestamp == nil {
				out = append(out, &istios[i])
			}
		}
	}
	return out
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
