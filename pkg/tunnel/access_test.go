package tunnel

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/manifests"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
)

func TestAccessPolicy(t *testing.T) {
	p, err := ParseAccessPolicy([]byte(`
prefix: "mf:"
allow:
- user: system:serviceaccount:istio-system:istiod
- group: platform-admins
  clusters: [east]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id      Identity
		cluster string
		want    bool
	}{
		{Identity{User: "system:serviceaccount:istio-system:istiod"}, "west", true},
		{Identity{User: "bob", Groups: []string{"platform-admins"}}, "east", true},
		{Identity{User: "bob", Groups: []string{"platform-admins"}}, "west", false},
		{Identity{User: "admin", Groups: []string{"system:masters"}}, "east", false},
	}
	for _, tt := range tests {
		if got := p.allows(&tt.id, tt.cluster); got != tt.want {
			t.Errorf("allows(%+v, %s) = %v, want %v", tt.id, tt.cluster, got, tt.want)
		}
	}
	if msg := p.deniedMessage(&Identity{User: "eve"}, "east"); !strings.Contains(msg, `{user: "eve", clusters: [east]}`) || !strings.Contains(msg, `"mf:eve"`) {
		t.Errorf("denied message does not say how to allow eve: %s", msg)
	}
	for _, bad := range []string{
		`prefix: "system:x:"` + "\nallow: []",
		"allow: [{user: a, group: b}]",
		"allow: [{}]",
		"allow: [{user: a, clusters: [Not_A_Label]}]",
		"allow: [{user: a, cluster: [x]}]",
	} {
		if _, err := ParseAccessPolicy([]byte(bad)); err == nil {
			t.Errorf("policy %q accepted", bad)
		}
	}
}

func TestStripCredentials(t *testing.T) {
	h := http.Header{
		"Authorization":          {"Bearer x"},
		"Proxy-Authorization":    {"Basic y"},
		"Impersonate-User":       {"admin"},
		"Impersonate-Group":      {"system:masters"},
		"Impersonate-Extra-Foo":  {"bar"},
		"X-Remote-User":          {"root"},
		"X-Remote-Group":         {"system:masters"},
		"Sec-Websocket-Protocol": {"base64url.bearer.authorization.k8s.io.dG9rZW4, v4.channel.k8s.io", "BASE64URL.BEARER.AUTHORIZATION.K8S.IO.eA"},
		"Accept":                 {"application/json"},
	}
	if tok, ok := websocketBearerToken(h); !ok || tok != "token" {
		t.Errorf("websocket bearer token = %q %v, want token", tok, ok)
	}
	stripCredentials(h)
	want := http.Header{"Accept": {"application/json"}, "Sec-Websocket-Protocol": {"v4.channel.k8s.io"}}
	if len(h) != len(want) || h.Get("Accept") != want.Get("Accept") || h.Get("Sec-WebSocket-Protocol") != "v4.channel.k8s.io" {
		t.Errorf("after stripping: %v, want %v", h, want)
	}
}

func TestVerbLabel(t *testing.T) {
	for in, want := range map[string]string{"get": "get", "watch": "watch", "x0method": "other", "": "other", "propfind": "other"} {
		if got := verbLabel(in); got != want {
			t.Errorf("verbLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClusterSetNotifiesRemovals(t *testing.T) {
	s := NewClusterSet("a", "b")
	var removed [][]string
	s.notify(func(r []string) { removed = append(removed, r) })
	s.Set([]string{"b", "c"})
	s.Set([]string{"b", "c"})
	if len(removed) != 1 || !slices.Equal(removed[0], []string{"a"}) || !s.Has("c") || s.Has("a") {
		t.Errorf("removals %v, set %v", removed, s.Names())
	}
}

// The agent manifest lets the agent impersonate exactly what the mapping
// produces for the default access policy, and nothing outside the prefix.
func TestAgentRBACMatchesMapping(t *testing.T) {
	b, err := manifests.Tunnel.ReadFile("tunnel/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var users, groups []string
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var role struct {
			Kind     string `json:"kind"`
			Metadata struct{ Name string }
			Rules    []struct {
				Resources     []string `json:"resources"`
				Verbs         []string `json:"verbs"`
				ResourceNames []string `json:"resourceNames"`
			} `json:"rules"`
		}
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		if role.Kind != "ClusterRole" || role.Metadata.Name != "meshfleet-tunnel-agent" {
			continue
		}
		for _, r := range role.Rules {
			if len(r.ResourceNames) == 0 {
				t.Errorf("rule %+v has no resourceNames: the agent could impersonate anyone", r)
			}
			switch {
			case slices.Equal(r.Resources, []string{"users"}):
				users = append(users, r.ResourceNames...)
			case slices.Equal(r.Resources, []string{"groups"}):
				groups = append(groups, r.ResourceNames...)
			default:
				t.Errorf("rule on %v: the mapping impersonates only users and groups", r.Resources)
			}
		}
	}
	var wantUsers, wantGroups []string
	for _, r := range DefaultAccessPolicy(DefaultIstioNamespace, DefaultMeshfleetNamespace).Allow {
		ns := strings.Split(r.User, ":")[2]
		m := mapping.Map(mapping.DefaultPrefix, mapping.Identity{User: r.User, Groups: append(mapping.ServiceAccountGroups(ns), "system:authenticated")})
		wantUsers = append(wantUsers, m.User)
		for _, g := range m.Groups {
			if !slices.Contains(wantGroups, g) {
				wantGroups = append(wantGroups, g)
			}
		}
	}
	slices.Sort(users)
	slices.Sort(groups)
	slices.Sort(wantUsers)
	slices.Sort(wantGroups)
	if !slices.Equal(users, wantUsers) || !slices.Equal(groups, wantGroups) {
		t.Errorf("agent.yaml impersonates users %v groups %v; the mapping of the default policy gives users %v groups %v", users, groups, wantUsers, wantGroups)
	}
	// The operator binds istiod and Kiali under the same mapped names.
	for _, c := range []render.Consumer{render.Istiod, render.Kiali} {
		if u := c.TunnelUser(DefaultIstioNamespace); !slices.Contains(users, u) {
			t.Errorf("the operator binds %s as %q, which the agent may not impersonate", c.Name, u)
		}
	}
	if render.TunnelTokenAudience != TokenAudience {
		t.Errorf("istiod's projected token is for %q, the tunnel wants %q", render.TunnelTokenAudience, TokenAudience)
	}
}
