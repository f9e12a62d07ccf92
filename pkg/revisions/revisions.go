// Package revisions tells which istiod revision each workload runs on and
// when an old revision may be removed. It is pure: callers list the Pods.
package revisions

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Istio's marks on an injected pod.
const (
	// AnnotationStatus is the injector's record of what it injected, with
	// the injecting revision.
	AnnotationStatus = "sidecar.istio.io/status"
	// LabelRevision is the revision label, set on the pod by the injector.
	LabelRevision = "istio.io/rev"
)

// Of returns the revision whose injector injected pod: the revision in its
// sidecar.istio.io/status annotation, else its istio.io/rev label; "" when
// the pod carries neither (not injected).
func Of(pod *corev1.Pod) string {
	if s := pod.Annotations[AnnotationStatus]; s != "" {
		var st struct {
			Revision string `json:"revision"`
		}
		if json.Unmarshal([]byte(s), &st) == nil && st.Revision != "" {
			return st.Revision
		}
	}
	return pod.Labels[LabelRevision]
}

// Count returns the number of pods on each revision; pods not injected and
// pods already terminating are left out.
func Count(pods []corev1.Pod) map[string]int {
	out := map[string]int{}
	for i := range pods {
		if pods[i].DeletionTimestamp != nil {
			continue
		}
		if r := Of(&pods[i]); r != "" {
			out[r]++
		}
	}
	return out
}

// Removable says whether revision rev may be deleted: no pod runs on it and
// the grace period has passed since it stopped being the target of every
// tag (inactiveSince). When it may not, the reason says what it waits for.
func Removable(rev string, counts map[string]int, inactiveSince time.Time, grace time.Duration, now time.Time) (bool, string) {
	if n := counts[rev]; n > 0 {
		return false, fmt.Sprintf("revision %s still injects %d pod(s); restart them onto the new revision", rev, n)
	}
	if left := inactiveSince.Add(grace).Sub(now); left > 0 {
		return false, fmt.Sprintf("revision %s is unused; it is removed after the grace period, in %v", rev, left.Round(time.Second))
	}
	return true, ""
}

// Resolve returns counts with the pods counted under a tag (labelled
// istio.io/rev=<tag>, not injected yet or not by a revision's record)
// moved to the revision the tag points at (tags: tag -> revision). A tag
// that points nowhere keeps its count under its own name.
func Resolve(counts map[string]int, tags map[string]string) map[string]int {
	out := make(map[string]int, len(counts))
	for name, n := range counts {
		if rev, ok := tags[name]; ok && rev != "" {
			name = rev
		}
		out[name] += n
	}
	return out
}
