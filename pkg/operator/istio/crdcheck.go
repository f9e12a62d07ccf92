package istio

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// crdCheck remembers, per Istio resource, the live version of each of
// Istio's CRDs when they were last found applied (covering the manifest the
// render Memo named by its generation) and established. A reconcile whose
// manifest has that generation and whose cache holds every CRD at that
// version would apply nothing and wait for nothing, so it skips the CRDs:
// reading the 14 CRDs out of the cache twice (a deep copy each time),
// hashing and comparing them was the largest share of the operator's CPU
// once the render was memoised (decision 70). Any change to a CRD (an edit,
// a deletion, a re-creation) changes its version, and any change of the
// manifest its generation, and the CRDs are checked in full again.
type crdCheck struct {
	mu   sync.Mutex
	last map[types.UID]crdVersions
}

type crdVersions struct {
	generation uint64
	versions   map[string]string // CRD name -> liveVersion()
}

// unchanged reports whether the CRDs of the manifest of generation are, in
// reader (the cache), as they were when last recorded for owner.
func (c *crdCheck) unchanged(ctx context.Context, reader client.Reader, owner types.UID, generation uint64, crds []*unstructured.Unstructured) bool {
	c.mu.Lock()
	last, ok := c.last[owner]
	c.mu.Unlock()
	if !ok || generation == 0 || last.generation != generation || len(last.versions) != len(crds) {
		return false
	}
	for _, crd := range crds {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(crd.GroupVersionKind())
		// Only the metadata is read: no copy of the cached object is needed.
		if err := reader.Get(ctx, client.ObjectKeyFromObject(crd), live, client.UnsafeDisableDeepCopy); err != nil {
			return false
		}
		if v, ok := last.versions[crd.GetName()]; !ok || v != liveVersion(live) {
			return false
		}
	}
	return true
}

// record notes the versions of the CRDs of the manifest of generation, all
// applied and established, for owner.
func (c *crdCheck) record(owner types.UID, generation uint64, versions map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[types.UID]crdVersions{}
	}
	if len(c.last) >= maxCRDChecks {
		if _, ok := c.last[owner]; !ok {
			clear(c.last)
		}
	}
	c.last[owner] = crdVersions{generation: generation, versions: versions}
}

// maxCRDChecks bounds the record: a handful of Istio resources in practice.
const maxCRDChecks = 16

// liveVersion identifies one state of a live object: its UID (a re-created
// object has another) and resourceVersion (any write changes it).
func liveVersion(o *unstructured.Unstructured) string {
	return string(o.GetUID()) + "/" + o.GetResourceVersion()
}
