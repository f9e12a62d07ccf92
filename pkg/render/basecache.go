package render

import (
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The base chart (Istio's CRDs and the cluster-wide reader role) depends on
// nothing but the chart version and the control plane's namespace
// (baseValues), yet rendering it, Istio's CRDs parsed through Helm's
// fromYAML, was a quarter of the operator's CPU when 20 remotes joined
// (decision 58): every join and every re-render of the primary rendered it
// again. Its objects are kept per (minor, namespace) and each Render gets
// deep copies, because later steps change them; Render stays pure.
var baseObjectsCache = struct {
	sync.Mutex
	byKey map[baseKey][]*unstructured.Unstructured
}{byKey: map[baseKey][]*unstructured.Unstructured{}}

type baseKey struct{ minor, namespace string }

// maxBaseCacheEntries bounds the cache: one entry per supported minor and
// control-plane namespace, so a handful in practice.
const maxBaseCacheEntries = 16

// baseObjects returns the base chart's objects for minor in namespace.
func baseObjects(minor, namespace string) ([]*unstructured.Unstructured, error) {
	key := baseKey{minor, namespace}
	c := &baseObjectsCache
	c.Lock()
	objs, ok := c.byKey[key]
	c.Unlock()
	if !ok {
		var err error
		objs, err = renderObjects(minor, chartBase, istiodRelease, namespace, baseValues(namespace))
		if err != nil {
			return nil, err
		}
		c.Lock()
		if len(c.byKey) < maxBaseCacheEntries {
			c.byKey[key] = objs
		}
		c.Unlock()
	}
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out, nil
}
