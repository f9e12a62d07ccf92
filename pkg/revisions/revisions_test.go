package revisions

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(ann, label string, deleting bool) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}, Labels: map[string]string{}}}
	if ann != "" {
		p.Annotations[AnnotationStatus] = ann
	}
	if label != "" {
		p.Labels[LabelRevision] = label
	}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

func TestCount(t *testing.T) {
	pods := []corev1.Pod{
		pod(`{"initContainers":["istio-init"],"revision":"1-30-3"}`, "1-30-3", false),
		pod(`{"revision":"1-31-0"}`, "", false),
		pod("", "1-31-0", false),               // labelled, status lost
		pod("", "", false),                     // not injected
		pod(`{"revision":"1-30-3"}`, "", true), // terminating
		pod(`not json`, "1-29-6", false),
	}
	got := Count(pods)
	want := map[string]int{"1-30-3": 1, "1-31-0": 2, "1-29-6": 1}
	if len(got) != len(want) {
		t.Fatalf("Count = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Count = %v, want %v", got, want)
		}
	}
}

func TestRemovable(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	grace := 30 * time.Second
	if ok, why := Removable("old", map[string]int{"old": 2}, now.Add(-time.Hour), grace, now); ok || !strings.Contains(why, "2 pod(s)") {
		t.Errorf("pods on it: %v %q", ok, why)
	}
	if ok, why := Removable("old", map[string]int{"new": 2}, now.Add(-10*time.Second), grace, now); ok || !strings.Contains(why, "in 20s") {
		t.Errorf("within grace: %v %q", ok, why)
	}
	if ok, _ := Removable("old", map[string]int{"new": 2}, now.Add(-time.Minute), grace, now); !ok {
		t.Error("unused after grace: not removable")
	}
}

func TestResolve(t *testing.T) {
	got := Resolve(map[string]int{"1-30-3": 2, "default": 3, "stable": 1, "orphan": 4}, map[string]string{"default": "1-31-0", "stable": "1-30-3", "orphan": ""})
	want := map[string]int{"1-30-3": 3, "1-31-0": 3, "orphan": 4}
	if len(got) != len(want) {
		t.Fatalf("Resolve = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Resolve = %v, want %v", got, want)
		}
	}
}
