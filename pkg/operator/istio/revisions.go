package istio

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
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

// defaultTag is the revision tag that namespaces labelled
// istio-injection=enabled (and istio.io/rev=default) use.
const defaultTag = "default"

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
// on the revision it was on). An old revision is dropped, and so pruned,
// once no pod uses it and the grace period since the tag left it passed.
// It updates ist.Status.Revisions and returns the merged manifest and how
// soon to look again (0: no old revision pending).
func (r *Reconciler) renderRevisions(ctx context.Context, ist *v1beta1.Istio, cp *render.ControlPlane) (*render.Manifest, time.Duration, error) {
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
	if target != want {
		ready, err := r.istiodReady(ctx, cp.Namespace, want)
		if err != nil {
			return nil, 0, err
		}
		if ready {
			target = want
		}
	}

	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods); err != nil {
		return nil, 0, fmt.Errorf("list pods to count them per revision: %w", err)
	}
	counts := revisions.Count(pods.Items)
	counts[target] += counts[defaultTag]

	var requeue time.Duration
	kept := revs[:0]
	for _, rv := range revs {
		rv.Default = rv.Name == target
		rv.Pods = int32(counts[rv.Name])
		rv.InUse = rv.Default || rv.Pods > 0
		rv.Message = ""
		if rv.Default || rv.Name == want {
			rv.InactiveSince = nil
			kept = append(kept, rv)
			continue
		}
		if rv.InactiveSince == nil {
			rv.InactiveSince = &metav1.Time{Time: now}
		}
		ok, msg := revisions.Removable(rv.Name, counts, rv.InactiveSince.Time, gracePeriod(ist), now)
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

	// The revision spec.version names renders last, so that objects every
	// revision renders (CRDs, cluster roles) come from the newest charts.
	order := make([]v1beta1.RevisionStatus, 0, len(kept))
	var last *v1beta1.RevisionStatus
	for i := range kept {
		if kept[i].Name == want {
			last = &kept[i]
			continue
		}
		order = append(order, kept[i])
	}
	order = append(order, *last)

	merged := &render.Manifest{NamespaceLabels: map[string]map[string]string{}}
	at := map[string]int{}
	atCRD := map[string]int{}
	var targetLabels map[string]map[string]string
	for _, rv := range order {
		c := *cp
		c.Version = rv.Version
		if set, err := render.ChartSetFor(rv.Version); err == nil {
			c.ChartVersion = set.Version
		}
		c.Revision = rv.Name
		c.RevisionTags = nil
		if rv.Default {
			c.RevisionTags = []string{defaultTag}
		}
		m, err := render.Render(&c)
		if err != nil {
			return nil, 0, fmt.Errorf("render revision %s: %w", rv.Name, err)
		}
		merged.CRDs = mergeObjects(merged.CRDs, m.CRDs, atCRD)
		merged.Objects = mergeObjects(merged.Objects, m.Objects, at)
		for ns, l := range m.NamespaceLabels {
			if merged.NamespaceLabels[ns] == nil {
				merged.NamespaceLabels[ns] = map[string]string{}
			}
			for k, v := range l {
				merged.NamespaceLabels[ns][k] = v
			}
		}
		if rv.Default {
			targetLabels = m.NamespaceLabels
		}
	}
	// Namespace labels (injection) follow the tag's revision.
	for ns, l := range targetLabels {
		for k, v := range l {
			merged.NamespaceLabels[ns][k] = v
		}
	}
	return merged, requeue, nil
}

// mergeObjects appends objs to into; an object already there (same kind,
// namespace and name) is replaced in place by the later one.
func mergeObjects(into, objs []*unstructured.Unstructured, at map[string]int) []*unstructured.Unstructured {
	for _, o := range objs {
		k := apply.Key(o)
		if i, ok := at[k]; ok {
			into[i] = o
			continue
		}
		at[k] = len(into)
		into = append(into, o)
	}
	return into
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
