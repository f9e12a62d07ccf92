package mapping

import (
	"fmt"
	"testing"
)

func TestMap(t *testing.T) {
	tests := []struct {
		name string
		in   Identity
		want Identity
	}{
		{"cluster-admin loses system:masters", Identity{User: "admin", Groups: []string{"system:masters", "system:authenticated"}},
			Identity{User: "meshfleet:admin", Groups: []string{"meshfleet:system:masters"}}},
		{"node is no node", Identity{User: "system:node:n1", Groups: []string{"system:nodes"}},
			Identity{User: "meshfleet:system:node:n1", Groups: []string{"meshfleet:system:nodes"}}},
		{"service account", Identity{User: ServiceAccountUser("istio-system", "istiod"), Groups: append(ServiceAccountGroups("istio-system"), "system:authenticated")},
			Identity{User: "meshfleet:system:serviceaccount:istio-system:istiod", Groups: []string{"meshfleet:system:serviceaccounts", "meshfleet:system:serviceaccounts:istio-system"}}},
		{"unauthenticated and empty groups dropped", Identity{User: "u", Groups: []string{"system:unauthenticated", ""}}, Identity{User: "meshfleet:u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Map(DefaultPrefix, tt.in)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Map(%+v) = %+v, want %+v", tt.in, got, tt.want)
			}
			for _, g := range got.Groups {
				if !Safe(DefaultPrefix, g) {
					t.Errorf("group %q is not under the prefix", g)
				}
			}
		})
	}
}
