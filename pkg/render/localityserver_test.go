package render

import (
	"fmt"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestLocalityServerSecretsByName checks that the locality server may read
// the RemoteIstios' kubeconfig Secrets by name only, and no Secret at all
// when no remote has one (an empty resourceNames would mean every Secret).
func TestLocalityServerSecretsByName(t *testing.T) {
	for _, tt := range []struct {
		members []Member
		want    string
	}{
		{nil, "[]"},
		{[]Member{{ClusterName: "east"}}, "[]"}, // through the tunnel
		{[]Member{{ClusterName: "west", KubeconfigSecret: "west-kc"}, {ClusterName: "east", KubeconfigSecret: "east-kc"}, {ClusterName: "tun"}},
			"[{[get] [] [secrets] [east-kc west-kc] []}]"},
	} {
		cp := &ControlPlane{Namespace: "istio-system", Owner: Owner{Name: "istio"}, LocalityLB: LocalityLB{Enabled: true}, Members: tt.members}
		objs, err := localityServerObjects(cp)
		if err != nil {
			t.Fatal(err)
		}
		var got []rbacv1.PolicyRule
		for _, o := range objs {
			if r, ok := o.(*rbacv1.Role); ok {
				for _, rule := range r.Rules {
					for _, res := range rule.Resources {
						if res == "secrets" {
							got = append(got, rule)
						}
					}
				}
			}
			if cr, ok := o.(*rbacv1.ClusterRole); ok {
				for _, rule := range cr.Rules {
					for _, res := range rule.Resources {
						if res == "secrets" {
							t.Errorf("the ClusterRole grants %v on Secrets", rule.Verbs)
						}
					}
				}
			}
		}
		if s := fmt.Sprint(got); s != tt.want {
			t.Errorf("members %v: Secret rules %s, want %s", tt.members, s, tt.want)
		}
	}
}
