package health

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 1, 16, 5, 0, 0, time.UTC)
	since := time.Date(2026, 12, 1, 16, 2, 11, 0, time.UTC)
	lease := &Lease{Holder: "pod-a", Renewed: now.Add(-2 * time.Second), Duration: 15 * time.Second}
	healthy := Summary{Writer: "pod-a", Lease: "istio-system/meshfleet-locality", Rules: 40,
		Members: []Member{{Name: "primary", Synced: true}, {Name: "remote-2", Synced: true}}}
	unsynced := healthy
	unsynced.Members = []Member{{Name: "primary", Synced: true}, {Name: "remote-2", NotSyncedSince: &since}}
	unsynced.Held, unsynced.HeldReason = 37, "member clusters not synced since start: remote-2"
	conflict := healthy
	conflict.Conflicts, conflict.ConflictNames = 1, []string{"meshfleet-locality.other.default"}
	noLease := healthy
	noLease.Lease = ""
	duplicate := healthy
	duplicate.DuplicateLocality, duplicate.DuplicateLocalityServices = 1, []string{"shop/cart"}
	cases := []struct {
		name  string
		s     *Summary
		lease *Lease
		state string
		line  string
	}{
		{"healthy", &healthy, lease, StateOK, "2 members synced, 40 rules, writer pod-a"},
		{"member not synced", &unsynced, lease, StateDegraded, "member remote-2 not synced since 2026-12-01 16:02:11 UTC: 37 rules held"},
		{"conflict", &conflict, lease, StateDegraded, "1 rule in conflict with objects not made by meshfleet (meshfleet-locality.other.default)"},
		{"duplicate locality", &duplicate, lease, StateDegraded, "1 service whose endpoints give istiod one locality twice, which proxyless gRPC clients reject (shop/cart; meshctl locality shows the fix)"},
		{"nothing published", nil, lease, StateNotRunning, "has published no state"},
		{"Lease gone", &healthy, nil, StateNotRunning, "Lease istio-system/meshfleet-locality does not exist"},
		{"Lease released", &healthy, &Lease{Renewed: now, Duration: 15 * time.Second}, StateNotRunning, "released by pod-a"},
		{"Lease expired", &healthy, &Lease{Holder: "pod-a", Renewed: now.Add(-time.Minute), Duration: 15 * time.Second}, StateNotRunning, "expired at 2026-12-01 16:04:15 UTC"},
		{"another writer, not published yet", &healthy, &Lease{Holder: "pod-b", Renewed: now, Duration: 15 * time.Second}, StateNotRunning, "pod-b holds Lease"},
		{"unsynced also when stale reads as not running", &unsynced, nil, StateNotRunning, "does not exist"},
		{"no Lease configured", &noLease, nil, StateOK, "writer pod-a"},
		{"no members", &Summary{Writer: "pod-a"}, nil, StateDegraded, "no member cluster known"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(tc.s, tc.lease, now)
			if v.State != tc.state || !strings.Contains(v.Line, tc.line) {
				t.Errorf("Judge = %q %q, want %q containing %q", v.State, v.Line, tc.state, tc.line)
			}
			if v.Problem() != (tc.state != StateOK) {
				t.Errorf("Problem() = %v for state %q", v.Problem(), v.State)
			}
		})
	}
}

func TestEncodeIsBoundedAndRoundTrips(t *testing.T) {
	s := Summary{Writer: "a", Held: 1000, Conflicts: 50, Error: strings.Repeat("x", 10000)}
	for i := range 1000 {
		s.HeldNames = append(s.HeldNames, fmt.Sprintf("meshfleet-locality.svc-%d.default", i))
	}
	s.ConflictNames = s.HeldNames[:50]
	s.DuplicateLocality, s.DuplicateLocalityServices = 1000, s.HeldNames
	data, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(data[Key]); n > 2048 {
		t.Errorf("encoded summary of 1000 held rules is %d bytes, want it bounded", n)
	}
	got, err := Decode("istio-system", data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Held != 1000 || got.Conflicts != 50 || len(got.HeldNames) != MaxNames || len(got.ConflictNames) != MaxNames || len(got.DuplicateLocalityServices) != MaxNames {
		t.Errorf("decoded %+v", got)
	}
}

func TestDecodeErrorsNameTheObject(t *testing.T) {
	for _, data := range []map[string]string{{}, {Key: "{"}} {
		_, err := Decode("istio-system", data)
		if err == nil || !strings.Contains(err.Error(), "istio-system/"+ConfigMapName) {
			t.Errorf("Decode(%v) = %v, want an error naming the ConfigMap", data, err)
		}
	}
}
