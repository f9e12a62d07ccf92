package members

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/locality"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://remote1.example:6443"}
users:
- name: u
  user: {token: abc}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`

func istio(name string, created time.Time, mod func(*v1beta1.Istio)) v1beta1.Istio {
	ist := v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system", CreationTimestamp: metav1.NewTime(created)}}
	if mod != nil {
		mod(&ist)
	}
	return ist
}

func remote(name string, mod func(*v1beta1.RemoteIstio)) v1beta1.RemoteIstio {
	ri := v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"},
		Spec: v1beta1.RemoteIstioSpec{KubeconfigSecretRef: &corev1.LocalObjectReference{Name: name + "-kubeconfig"}}}
	if mod != nil {
		mod(&ri)
	}
	return ri
}

func secret(name, data string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"}, Data: map[string][]byte{v1beta1.KubeconfigSecretKey: []byte(data)}}
}

func summary(m *Mesh) string {
	var parts []string
	for _, mb := range m.Members {
		parts = append(parts, mb.Name+"="+mb.Connection+"@"+mb.Config.Host)
	}
	return strings.Join(parts, " ")
}

func TestResolve(t *testing.T) {
	primary := &rest.Config{Host: "https://primary:6443", BearerToken: "server-token"}
	t0 := time.Unix(1700000000, 0)
	secrets := map[string]*corev1.Secret{"remote1-kubeconfig": secret("remote1-kubeconfig", kubeconfig), "bad-kubeconfig": secret("bad-kubeconfig", "{not yaml")}
	tunnel := &Tunnel{URL: "https://tunnel.example:8443/", CAData: []byte("ca")}
	deleting := metav1.NewTime(t0)
	tests := []struct {
		name         string
		istios       []v1beta1.Istio
		remotes      []v1beta1.RemoteIstio
		opts         Options
		want         string
		wantFailover []locality.Failover
		wantProblems []string
		// wantUnreachable lists the members left out but still joined.
		wantUnreachable string
		wantErr         string
	}{
		{
			name:   "primary alone, named by the resource",
			istios: []v1beta1.Istio{istio("istio", t0, nil)},
			want:   "istio=Primary@https://primary:6443",
		},
		{
			name: "clusterName, failover and a kubeconfig remote",
			istios: []v1beta1.Istio{istio("istio", t0, func(i *v1beta1.Istio) {
				i.Spec.ClusterName = "primary"
				i.Spec.LocalityLB.Failover = []v1beta1.LocalityFailover{{From: "r1", To: "r3"}, {From: "r2", To: "r1"}}
			})},
			remotes:      []v1beta1.RemoteIstio{remote("remote1", nil)},
			want:         "primary=Primary@https://primary:6443 remote1=Direct@https://remote1.example:6443",
			wantFailover: []locality.Failover{{From: "r1", To: "r3"}, {From: "r2", To: "r1"}},
		},
		{
			name:    "tunnel remote uses the server's credentials, spec.clusterName names it",
			istios:  []v1beta1.Istio{istio("istio", t0, nil)},
			remotes: []v1beta1.RemoteIstio{remote("edge", func(r *v1beta1.RemoteIstio) { r.Spec.KubeconfigSecretRef = nil; r.Spec.ClusterName = "east" })},
			opts:    Options{Tunnel: tunnel},
			want:    "east=Tunnel@https://tunnel.example:8443/clusters/east istio=Primary@https://primary:6443",
		},
		{
			name:            "tunnel remote without a tunnel is left out",
			istios:          []v1beta1.Istio{istio("istio", t0, nil)},
			remotes:         []v1beta1.RemoteIstio{remote("edge", func(r *v1beta1.RemoteIstio) { r.Spec.KubeconfigSecretRef = nil })},
			want:            "istio=Primary@https://primary:6443",
			wantProblems:    []string{"the tunnel's URL and CA"},
			wantUnreachable: "[edge]",
		},
		{
			name:   "missing Secret, missing key, bad kubeconfig, deleting, other Istio",
			istios: []v1beta1.Istio{istio("istio", t0, nil)},
			remotes: []v1beta1.RemoteIstio{
				remote("remote1", nil),
				remote("nosecret", nil),
				remote("badsecret", func(r *v1beta1.RemoteIstio) { r.Spec.KubeconfigSecretRef.Name = "bad-kubeconfig" }),
				remote("leaving", func(r *v1beta1.RemoteIstio) {
					r.DeletionTimestamp = &deleting
					r.Spec.KubeconfigSecretRef.Name = "remote1-kubeconfig"
				}),
				remote("other", func(r *v1beta1.RemoteIstio) {
					r.Spec.IstioRef = "another"
					r.Spec.KubeconfigSecretRef.Name = "remote1-kubeconfig"
				}),
			},
			want:            "istio=Primary@https://primary:6443 remote1=Direct@https://remote1.example:6443",
			wantProblems:    []string{"badsecret", "not usable", "nosecret", "Secret nosecret-kubeconfig not found"},
			wantUnreachable: "[badsecret nosecret]",
		},
		{
			name:         "a remote named like the primary is left out",
			istios:       []v1beta1.Istio{istio("istio", t0, nil)},
			remotes:      []v1beta1.RemoteIstio{remote("remote1", func(r *v1beta1.RemoteIstio) { r.Spec.ClusterName = "istio" })},
			want:         "istio=Primary@https://primary:6443",
			wantProblems: []string{`cluster name "istio" is already used`},
		},
		{
			name:   "several Istios: the oldest; remotes need istioRef",
			istios: []v1beta1.Istio{istio("young", t0.Add(time.Hour), nil), istio("old", t0, nil)},
			remotes: []v1beta1.RemoteIstio{remote("remote1", nil), remote("remote2", func(r *v1beta1.RemoteIstio) {
				r.Spec.IstioRef = "old"
				r.Spec.KubeconfigSecretRef.Name = "remote1-kubeconfig"
			})},
			want:         "old=Primary@https://primary:6443 remote2=Direct@https://remote1.example:6443",
			wantProblems: []string{"spec.istioRef is not set"},
		},
		{
			name:    "named Istio",
			istios:  []v1beta1.Istio{istio("young", t0.Add(time.Hour), nil), istio("old", t0, nil)},
			opts:    Options{Istio: "young"},
			want:    "young=Primary@https://primary:6443",
			remotes: nil,
		},
		{name: "no Istio", wantErr: "no Istio resource in namespace istio-system"},
		{name: "named Istio missing", istios: []v1beta1.Istio{istio("istio", t0, nil)}, opts: Options{Istio: "x"}, wantErr: "no Istio resource istio-system/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Resolve(primary, tc.istios, tc.remotes, secrets, tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(m); got != tc.want {
				t.Errorf("members:\n got %s\nwant %s", got, tc.want)
			}
			if len(m.Failover) != len(tc.wantFailover) {
				t.Errorf("failover = %v, want %v", m.Failover, tc.wantFailover)
			}
			for i := range tc.wantFailover {
				if i < len(m.Failover) && m.Failover[i] != tc.wantFailover[i] {
					t.Errorf("failover = %v, want %v", m.Failover, tc.wantFailover)
				}
			}
			if got := fmt.Sprint(m.Unreachable); (tc.wantUnreachable != "" || len(m.Unreachable) > 0) && got != tc.wantUnreachable {
				t.Errorf("unreachable %s, want %s", got, tc.wantUnreachable)
			}
			all := strings.Join(m.Problems, "\n")
			for _, p := range tc.wantProblems {
				if !strings.Contains(all, p) {
					t.Errorf("problems %q do not mention %q", m.Problems, p)
				}
			}
			if len(tc.wantProblems) == 0 && len(m.Problems) > 0 {
				t.Errorf("unexpected problems %q", m.Problems)
			}
		})
	}
}

func TestMeshKey(t *testing.T) {
	primary := &rest.Config{Host: "https://primary:6443"}
	ists := []v1beta1.Istio{istio("istio", time.Unix(0, 0), nil)}
	secrets := map[string]*corev1.Secret{"remote1-kubeconfig": secret("remote1-kubeconfig", kubeconfig)}
	a, _ := Resolve(primary, ists, []v1beta1.RemoteIstio{remote("remote1", nil)}, secrets, Options{})
	b, _ := Resolve(primary, ists, []v1beta1.RemoteIstio{remote("remote1", nil)}, secrets, Options{})
	if a.Key() != b.Key() {
		t.Error("equal meshes have different keys")
	}
	secrets["remote1-kubeconfig"] = secret("remote1-kubeconfig", strings.Replace(kubeconfig, "abc", "rotated", 1))
	c, _ := Resolve(primary, ists, []v1beta1.RemoteIstio{remote("remote1", nil)}, secrets, Options{})
	if a.Key() == c.Key() {
		t.Error("a rotated kubeconfig does not change the key")
	}
	ists[0].Spec.LocalityLB.Failover = []v1beta1.LocalityFailover{{From: "r1", To: "r2"}}
	d, _ := Resolve(primary, ists, []v1beta1.RemoteIstio{remote("remote1", nil)}, secrets, Options{})
	if c.Key() == d.Key() {
		t.Error("a new failover order does not change the key")
	}
}
