package rulesync

import (
	"testing"
	"time"
)

func TestTrackUnsynced(t *testing.T) {
	s := &Server{unsyncedSince: map[string]time.Time{}}
	t0, t1 := time.Unix(100, 0), time.Unix(200, 0)
	s.trackUnsynced(map[string]bool{"a": true, "b": false}, t0)
	s.trackUnsynced(map[string]bool{"a": false, "b": false}, t1)
	if s.unsyncedSince["b"] != t0 || s.unsyncedSince["a"] != t1 {
		t.Errorf("since %v: want b from the first sync that saw it, a from the second", s.unsyncedSince)
	}
	s.trackUnsynced(map[string]bool{"b": true}, t1) // a left, b synced
	if len(s.unsyncedSince) != 0 {
		t.Errorf("since %v after every member synced or left", s.unsyncedSince)
	}
}

func TestConflictName(t *testing.T) {
	for msg, want := range map[string]string{
		"DestinationRule istio-system/x exists and was not made by meshfleet": "istio-system/x",
		"something else": "something else",
	} {
		if got := conflictName(msg); got != want {
			t.Errorf("conflictName(%q) = %q, want %q", msg, got, want)
		}
	}
}
