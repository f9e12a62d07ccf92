package render

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// RevisionName is the istiod revision that installs Istio version v: the
// version with dots as dashes (1.30.3 -> 1-30-3), a DNS label as Istio's
// istio.io/rev and the names derived from it need.
func RevisionName(v string) string {
	return strings.ToLower(strings.NewReplacer(".", "-", "+", "-", "_", "-").Replace(v))
}

// IstiodName is the name of istiod's Deployment and Service: istiod, or
// istiod-<revision> for a revisioned control plane.
func IstiodName(cp *ControlPlane) string {
	if cp.Revision == "" {
		return "istiod"
	}
	return "istiod-" + cp.Revision
}

// DefaultTag is the revision tag that namespaces labelled
// istio-injection=enabled (or istio.io/rev=default) use.
const DefaultTag = "default"

// TagServiceName is the name of the istiod Service a revision tag renders
// (Istio's istiod-revision-tag-<tag>), which follows the tag's revision.
func TagServiceName(tag string) string { return "istiod-revision-tag-" + tag }

// InstalledRevision is one istiod revision a revision-based control plane
// keeps installed, with the revision tags that point at it.
type InstalledRevision struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Tags    []string `json:"tags,omitempty"`
}

// RenderRevisions renders cp once per revision (each under its own name,
// with the tags that point at it) and merges the results: revs lists the
// installed revisions, the newest last, whose copy wins for objects every
// revision renders (CRDs, cluster-wide RBAC, gateways). In the primary each
// revision renders with its own version's charts; a remote keeps its own
// version (its gateways' proxy image) and gets, per revision, the
// revisioned injection webhook calling istiod-<rev> on the remote path and
// the Service istiod-<rev> that leads to the primary. Namespace labels
// follow the revision the default tag is on. It is pure.
func RenderRevisions(cp *ControlPlane, revs []InstalledRevision) (*Manifest, error) {
	if len(revs) == 0 {
		return nil, fmt.Errorf("no revision to render")
	}
	names := make([]string, 0, len(revs))
	for _, rv := range revs {
		names = append(names, rv.Name)
	}
	merged := &Manifest{NamespaceLabels: map[string]map[string]string{}}
	at := map[string]int{}
	atCRD := map[string]int{}
	var tagLabels map[string]map[string]string
	for _, rv := range revs {
		c := *cp
		if cp.Remote == nil {
			c.Version = rv.Version
			if set, err := ChartSetFor(rv.Version); err == nil {
				c.ChartVersion = set.Version
			}
		}
		c.Revision = rv.Name
		c.RevisionTags = append([]string(nil), rv.Tags...)
		c.InstalledRevisions = names
		m, err := Render(&c)
		if err != nil {
			return nil, fmt.Errorf("revision %s: %w", rv.Name, err)
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
		if slices.Contains(rv.Tags, DefaultTag) {
			tagLabels = m.NamespaceLabels
		}
	}
	for ns, l := range tagLabels {
		for k, v := range l {
			merged.NamespaceLabels[ns][k] = v
		}
	}
	if err := sortObjects(cp, merged); err != nil {
		return nil, err
	}
	return merged, nil
}

// mergeObjects appends objs to into; an object already there (same kind,
// namespace and name) is replaced in place by the later one.
func mergeObjects(into, objs []*unstructured.Unstructured, at map[string]int) []*unstructured.Unstructured {
	for _, o := range objs {
		k := ObjectKey(o)
		if i, ok := at[k]; ok {
			into[i] = o
			continue
		}
		at[k] = len(into)
		into = append(into, o)
	}
	return into
}

// remoteTagServices makes each revision tag's Service in a remote lead where
// the revision's own Service does, to the primary's istiod (the chart would
// select istiod pods, which no remote runs): a copy of istiod-<rev> and its
// EndpointSlice under the tag's name. Through the east-west gateway the
// tag's name (its SNI) reaches the primary's tag Service, so the tag's
// address follows the tag.
func remoteTagServices(cp *ControlPlane, m *Manifest) error {
	if cp.Remote == nil || cp.Revision == "" {
		return nil
	}
	var svc, slice *unstructured.Unstructured
	for _, o := range m.Objects {
		if o.GetName() == IstiodName(cp) && o.GetNamespace() == cp.Namespace {
			switch o.GetKind() {
			case "Service":
				svc = o
			case "EndpointSlice":
				slice = o
			}
		}
	}
	kept := m.Objects[:0]
	for _, o := range m.Objects {
		if o.GetKind() == "Service" && slices.ContainsFunc(cp.RevisionTags, func(t string) bool { return o.GetName() == TagServiceName(t) }) {
			continue
		}
		kept = append(kept, o)
	}
	m.Objects = kept
	if svc == nil {
		return nil // no pilot address: nothing to lead to
	}
	for _, t := range cp.RevisionTags {
		s := svc.DeepCopy()
		s.SetName(TagServiceName(t))
		m.Objects = append(m.Objects, s)
		if slice != nil {
			e := slice.DeepCopy()
			e.SetName(TagServiceName(t))
			l := e.GetLabels()
			l["kubernetes.io/service-name"] = TagServiceName(t)
			e.SetLabels(l)
			m.Objects = append(m.Objects, e)
		}
	}
	return nil
}

// RevisionsOf returns the revisions an Istio resource with RevisionBased
// keeps installed, from its status.revisions (the record of what is
// installed), the one spec.version names last (newest); each carries the
// default tag where status says so and the named tags of its status entry.
// Before the first status, spec.version's revision is the only one and
// holds the default tag. Remotes render the same list.
func RevisionsOf(ist *v1beta1.Istio) []InstalledRevision {
	v := ist.Spec.Version
	want := RevisionName(v)
	var out []InstalledRevision
	var last *InstalledRevision
	hasDefault := false
	for _, rv := range ist.Status.Revisions {
		r := InstalledRevision{Name: rv.Name, Version: rv.Version}
		if rv.Default {
			r.Tags = append(r.Tags, DefaultTag)
			hasDefault = true
		}
		r.Tags = append(r.Tags, rv.Tags...)
		if rv.Name == want {
			last = &r
			continue
		}
		out = append(out, r)
	}
	if last == nil {
		last = &InstalledRevision{Name: want, Version: v}
	}
	if !hasDefault {
		last.Tags = append([]string{DefaultTag}, last.Tags...)
	}
	return append(out, *last)
}

// RevisionsFor is RevisionsOf as cluster sees it during a fleet rollout
// (status.rollout): in a cluster whose batch moved (gating or passed) the
// default tag is on the rollout's new revision, elsewhere where
// status.revisions puts it.
func RevisionsFor(ist *v1beta1.Istio, cluster string) []InstalledRevision {
	revs := RevisionsOf(ist)
	to := RolloutTarget(ist, cluster)
	if to == "" {
		return revs
	}
	has := false
	for _, rv := range revs {
		has = has || rv.Name == to
	}
	if !has {
		return revs
	}
	for i := range revs {
		tags := revs[i].Tags[:0:0]
		for _, t := range revs[i].Tags {
			if t != DefaultTag {
				tags = append(tags, t)
			}
		}
		if revs[i].Name == to {
			tags = append([]string{DefaultTag}, tags...)
		}
		revs[i].Tags = tags
	}
	return revs
}

// RolloutTarget is the revision the default tag is on in cluster because of
// a fleet rollout in progress or halted (its batch moved and was not moved
// back), or "" when the rollout does not place it.
func RolloutTarget(ist *v1beta1.Istio, cluster string) string {
	st := ist.Status.Rollout
	if st == nil || st.Phase == "Done" {
		return ""
	}
	for _, b := range st.Batches {
		for _, c := range b.Clusters {
			if c == cluster && (b.Phase == "Gating" || b.Phase == "Passed") {
				return st.To
			}
		}
	}
	return ""
}
