package istio

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator/rollout"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/revisions"
)

// defaultGracePeriod is how long an unused old revision stays installed when
// spec.updateStrategy does not say.
const defaultGracePeriod = 30 * time.Second

// podRecheck is how often an old revision still in use is looked at again:
// Pods are not watched (the cache holds only meshfleet's objects).
const podRecheck = 5 * time.Second

// revisionBased reports whether ist upgrades by revision.
func revisionBased(ist *v1beta1.Istio) bool {
	return ist.Spec.UpdateStrategy != nil && ist.Spec.UpdateStrategy.Type == v1beta1.UpdateStrategyRevisionBased
}

func gracePeriod(ist *v1beta1.Istio) time.Duration {
	if s := ist.Spec.UpdateStrategy; s != nil && s.InactiveRevisionDeletionGracePeriodSeconds != nil {
		return time.Duration(*s.InactiveRevisionDeletionGracePeriodSeconds) * time.Second
	}
	return defaultGracePeriod
}

// renderRevisions renders every revision still installed (status.revisions)
// and the one spec.version asks for, each under its own name, with the
// default tag on the newest revision once its istiod is ready (before that
// on the revision it was on) and the named tags where spec says. An old
// revision is dropped, and so pruned, once no pod of any cluster uses it, no
// named tag points at it and the grace period since the default tag left it
// passed. Pods are counted in the primary and taken from each remote's
// RemoteIstio status (remotePods: cluster -> revision or tag -> pods). It
// updates ist.Status.Revisions and returns the merged manifest and how soon
// to look again (0: no old revision pending).
func (r *Reconciler) renderRevisions(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane, remotePods map[string]map[string]int) (*render.Manifest, time.Duration, error) {
	now := r.now()
	want := render.RevisionName(cp.Version)
	revs := append([]v1beta1.RevisionStatus(nil), ist.Status.Revisions...)
	target := ""
	found := false
	for _, rv := range revs {
		if rv.Default {
			target = rv.Name
		}
		if rv.Name == want {
			found = true
		}
	}
	if !found {
		revs = append(revs, v1beta1.RevisionStatus{Name: want, Version: cp.Version})
	}
	if target == "" {
		target = want
	}
	var rolloutRequeue time.Duration
	if ro := ist.Spec.UpdateStrategy.Rollout; ro != nil {
		var err error
		target, rolloutRequeue, err = r.driveRollout(ctx, ist, cp, ro, target, want, now)
		if err != nil {
			return nil, 0, err
		}
	} else if target != want {
		ready, err := r.istiodReady(ctx, cp.Namespace, want)
		if err != nil {
			return nil, 0, err
		}
		if ready {
			target = want
		}
	}
	tags := map[string]string{render.DefaultTag: target}
	for _, t := range namedTags(ist) {
		tags[t.Name] = resolveTag(t.Revision, revs)
	}

	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods); err != nil {
		return nil, 0, fmt.Errorf("list pods to count them per revision: %w", err)
	}
	// The default tag may sit on another revision in a cluster the fleet
	// rollout moved.
	tagsIn := func(cluster string) map[string]string {
		to := render.RolloutTarget(ist, cluster)
		if to == "" {
			return tags
		}
		t := map[string]string{}
		for k, v := range tags {
			t[k] = v
		}
		t[render.DefaultTag] = to
		return t
	}
	perCluster := map[string]map[string]int{cp.ClusterName: revisions.Resolve(revisions.Count(pods.Items), tagsIn(cp.ClusterName))}
	for c, n := range remotePods {
		perCluster[c] = revisions.Resolve(n, tagsIn(c))
	}
	counts := map[string]int{}
	for _, n := range perCluster {
		for rev, k := range n {
			counts[rev] += k
		}
	}

	var requeue time.Duration
	kept := revs[:0]
	for _, rv := range revs {
		rv.Default = rv.Name == target
		rv.Pods = int32(counts[rv.Name])
		rv.Clusters = clusterPods(perCluster, rv.Name)
		rv.Tags = nil
		for _, t := range namedTags(ist) {
			if tags[t.Name] == rv.Name {
				rv.Tags = append(rv.Tags, t.Name)
			}
		}
		rv.InUse = rv.Default || rv.Pods > 0 || len(rv.Tags) > 0
		rv.Message = ""
		if rv.Default || rv.Name == want || rolloutKeeps(ist, rv.Name) {
			rv.InactiveSince = nil
			kept = append(kept, rv)
			continue
		}
		if rv.InactiveSince == nil {
			rv.InactiveSince = &metav1.Time{Time: now}
		}
		ok, msg := revisions.Removable(rv.Name, counts, rv.InactiveSince.Time, gracePeriod(ist), now)
		if ok && len(rv.Tags) > 0 {
			ok, msg = false, fmt.Sprintf("revision %s is the target of tag(s) %s (spec.updateStrategy.revisionTags); point them elsewhere to remove it", rv.Name, strings.Join(rv.Tags, ", "))
		}
		if ok {
			continue
		}
		rv.Message = msg
		next := podRecheck
		if left := rv.InactiveSince.Add(gracePeriod(ist)).Sub(now); left > 0 && left < next {
			next = left
		}
		if requeue == 0 || next < requeue {
			requeue = next
		}
		kept = append(kept, rv)
	}
	ist.Status.Revisions = kept
	if rolloutRequeue > 0 && (requeue == 0 || rolloutRequeue < requeue) {
		requeue = rolloutRequeue
	}

	m, err := r.renders.RenderRevisions(cp, render.RevisionsFor(ist, cp.ClusterName))
	if err != nil {
		return nil, 0, err
	}
	return m, requeue, nil
}

// namedTags are spec.updateStrategy.revisionTags.
func namedTags(ist *v1beta1.Istio) []v1beta1.RevisionTag {
	if ist.Spec.UpdateStrategy == nil {
		return nil
	}
	return ist.Spec.UpdateStrategy.RevisionTags
}

// resolveTag returns the installed revision a tag names, by revision name or
// by the version it runs; "" when none.
func resolveTag(ref string, revs []v1beta1.RevisionStatus) string {
	for _, rv := range revs {
		if rv.Name == ref || rv.Version == ref {
			return rv.Name
		}
	}
	return ""
}

// clusterPods lists the clusters with pods on rev, by cluster name.
func clusterPods(perCluster map[string]map[string]int, rev string) []v1beta1.ClusterPods {
	var out []v1beta1.ClusterPods
	for c, n := range perCluster {
		if n[rev] > 0 {
			out = append(out, v1beta1.ClusterPods{Cluster: c, Pods: int32(n[rev])})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cluster < out[j].Cluster })
	return out
}

// istiodReady reports whether revision rev's istiod Deployment has rolled out.
func (r *Reconciler) istiodReady(ctx context.Context, namespace, rev string) (bool, error) {
	d := &unstructured.Unstructured{}
	d.SetAPIVersion("apps/v1")
	d.SetKind("Deployment")
	d.SetNamespace(namespace)
	d.SetName(render.IstiodName(&render.ControlPlane{Revision: rev}))
	out := rollout.Status(ctx, r.Client, []*unstructured.Unstructured{d})
	if out.Done {
		return true, nil
	}
	if out.Err != nil && !apierrors.IsNotFound(out.Err) {
		return false, out.Err
	}
	return false, nil
}
