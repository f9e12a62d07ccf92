package canary

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

var target = Target{Service: "reviews", Namespace: "default", Domain: "cluster.local", StableSubset: "stable", CanarySubset: "canary"}

func vsFromYAML(t *testing.T, y string) *networkingv1alpha3.VirtualService {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	vs := &networkingv1alpha3.VirtualService{}
	if err := protojson.Unmarshal(j, vs); err != nil {
		t.Fatalf("%s: %v", y, err)
	}
	return vs
}

func drFromYAML(t *testing.T, y string) *networkingv1alpha3.DestinationRule {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	dr := &networkingv1alpha3.DestinationRule{}
	if err := protojson.Unmarshal(j, dr); err != nil {
		t.Fatalf("%s: %v", y, err)
	}
	return dr
}

func TestMergeVirtualService(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string // "" for no VirtualService
		split   Split
		want    string
		wantErr string
	}{{
		name:  "new VirtualService",
		split: Split{90, 10},
		want: `hosts: [reviews]
http:
- name: meshfleet-canary
  route:
  - {destination: {host: reviews.default.svc.cluster.local, subset: stable}, weight: 90}
  - {destination: {host: reviews.default.svc.cluster.local, subset: canary}, weight: 10}`,
	}, {
		name: "user route to the service is split; unrelated routes, matches and retries kept",
		in: `hosts: [reviews]
http:
- name: debug
  match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: debug}}]
- name: ratings-mirror
  match: [{uri: {prefix: /ratings}}]
  route: [{destination: {host: ratings}}]
- name: default
  retries: {attempts: 3}
  route: [{destination: {host: reviews, port: {number: 9080}}, headers: {request: {set: {x-a: b}}}}]
tcp:
- route: [{destination: {host: reviews}}]`,
		split: Split{50, 50},
		want: `hosts: [reviews]
http:
- name: debug
  match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: debug}}]
- name: ratings-mirror
  match: [{uri: {prefix: /ratings}}]
  route: [{destination: {host: ratings}}]
- name: default
  retries: {attempts: 3}
  route:
  - {destination: {host: reviews, subset: stable, port: {number: 9080}}, headers: {request: {set: {x-a: b}}}, weight: 50}
  - {destination: {host: reviews, subset: canary, port: {number: 9080}}, headers: {request: {set: {x-a: b}}}, weight: 50}
tcp:
- route: [{destination: {host: reviews}}]`,
	}, {
		name: "share of a route that also goes elsewhere",
		in: `hosts: [reviews.default.svc.cluster.local]
http:
- route:
  - {destination: {host: reviews.default.svc.cluster.local}, weight: 80}
  - {destination: {host: reviews-legacy}, weight: 20}`,
		split: Split{90, 10},
		want: `hosts: [reviews.default.svc.cluster.local]
http:
- route:
  - {destination: {host: reviews.default.svc.cluster.local, subset: stable}, weight: 72}
  - {destination: {host: reviews.default.svc.cluster.local, subset: canary}, weight: 8}
  - {destination: {host: reviews-legacy}, weight: 20}`,
	}, {
		name: "stepping again rewrites the existing split",
		in: `hosts: [reviews]
http:
- name: meshfleet-canary
  route:
  - {destination: {host: reviews.default.svc.cluster.local, subset: stable}, weight: 90}
  - {destination: {host: reviews.default.svc.cluster.local, subset: canary}, weight: 10}`,
		split: Split{0, 100},
		want: `hosts: [reviews]
http:
- name: meshfleet-canary
  route:
  - {destination: {host: reviews.default.svc.cluster.local, subset: canary}}`,
	}, {
		name: "rollback keeps a single stable destination",
		in: `hosts: [reviews]
http:
- route:
  - {destination: {host: reviews, subset: stable}, weight: 50}
  - {destination: {host: reviews, subset: canary}, weight: 50}`,
		split: Split{100, 0},
		want: `hosts: [reviews]
http:
- route:
  - {destination: {host: reviews, subset: stable}}`,
	}, {
		name: "matched routes only: the canary's catch-all route is appended",
		in: `hosts: [reviews]
http:
- match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: debug}}]`,
		split: Split{90, 10},
		want: `hosts: [reviews]
http:
- match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: debug}}]
- name: meshfleet-canary
  route:
  - {destination: {host: reviews.default.svc.cluster.local, subset: stable}, weight: 90}
  - {destination: {host: reviews.default.svc.cluster.local, subset: canary}, weight: 10}`,
	}, {
		name: "a catch-all route elsewhere would shadow the canary",
		in: `hosts: [reviews]
http:
- name: all-to-v0
  route: [{destination: {host: reviews, subset: v0}}]`,
		split:   Split{90, 10},
		wantErr: `http route 0 ("all-to-v0") sends every request elsewhere`,
	}, {
		name:    "bad split",
		split:   Split{90, 20},
		wantErr: "does not add up to 100",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var in *networkingv1alpha3.VirtualService
			if tc.in != "" {
				in = vsFromYAML(t, tc.in)
			}
			var before *networkingv1alpha3.VirtualService
			if in != nil {
				before = proto.Clone(in).(*networkingv1alpha3.VirtualService)
			}
			got, err := MergeVirtualService(in, target, tc.split)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := vsFromYAML(t, tc.want); !proto.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", protojson.Format(got), protojson.Format(want))
			}
			if in != nil && !proto.Equal(in, before) {
				t.Errorf("input modified")
			}
			if split, ok := WeightsOf(got, target); tc.in == "" && (!ok || split != tc.split) {
				t.Errorf("WeightsOf = %s, %v; want %s", split, ok, tc.split)
			}
		})
	}
}

func TestMergeDestinationRule(t *testing.T) {
	stable := &networkingv1alpha3.Subset{Name: "stable", Labels: map[string]string{"version": "v1"}}
	canary := &networkingv1alpha3.Subset{Name: "canary", Labels: map[string]string{"version": "v2"}}
	for _, tc := range []struct {
		name           string
		in             string
		stable, canary *networkingv1alpha3.Subset
		want, wantErr  string
	}{{
		name: "new rule has subsets only (no traffic policy to shadow the locality server's)", stable: stable, canary: canary,
		want: `host: reviews.default.svc.cluster.local
subsets:
- {name: stable, labels: {version: v1}}
- {name: canary, labels: {version: v2}}`,
	}, {
		name: "locality policy, outlier detection and other subsets are kept; a same-named subset keeps its policy",
		in: `host: reviews
trafficPolicy:
  outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}
  loadBalancer:
    localityLbSetting:
      enabled: true
      failover: [{from: r1, to: r2}]
subsets:
- {name: debug, labels: {version: v0}}
- {name: canary, labels: {version: old}, trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}}`,
		stable: stable, canary: canary,
		want: `host: reviews
trafficPolicy:
  outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}
  loadBalancer:
    localityLbSetting:
      enabled: true
      failover: [{from: r1, to: r2}]
subsets:
- {name: debug, labels: {version: v0}}
- {name: canary, labels: {version: v2}, trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}}
- {name: stable, labels: {version: v1}}`,
	}, {
		name: "existing subsets by name, no labels given",
		in: `host: reviews
subsets: [{name: stable, labels: {version: v1}}, {name: canary, labels: {version: v2}}]`,
		want: `host: reviews
subsets: [{name: stable, labels: {version: v1}}, {name: canary, labels: {version: v2}}]`,
	}, {
		name: "missing subset", in: `host: reviews`, stable: stable,
		wantErr: `no subset "canary"; pass its labels (e.g. --canary-labels version=v1)`,
	}, {
		name: "other host", in: `host: ratings`, stable: stable, canary: canary,
		wantErr: `for host "ratings"`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var in *networkingv1alpha3.DestinationRule
			if tc.in != "" {
				in = drFromYAML(t, tc.in)
			}
			got, err := MergeDestinationRule(in, target, tc.stable, tc.canary)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := drFromYAML(t, tc.want); !proto.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", protojson.Format(got), protojson.Format(want))
			}
		})
	}
}

func TestHostMatches(t *testing.T) {
	for h, want := range map[string]bool{
		"reviews": true, "reviews.default": true, "reviews.default.svc": true, "reviews.default.svc.cluster.local": true,
		"reviews.other": false, "ratings": false, "*.default.svc.cluster.local": false,
	} {
		if got := HostMatches(h, "reviews", "default", "cluster.local"); got != want {
			t.Errorf("HostMatches(%q) = %v", h, got)
		}
	}
}
