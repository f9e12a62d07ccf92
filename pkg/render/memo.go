package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Memo keeps, per owner, the last manifest rendered and the input it was
// rendered from, and hands out copies of it while that input stays the
// same. Render is pure, so this changes no result; it removes the render
// from a reconcile whose input did not change: the operator reconciles the
// primary's control plane on every change of a RemoteIstio (to report its
// phase among the members), and with 20 remotes joining most of those
// changes leave the ControlPlane as it was, yet each rendered Istio's charts
// again (decision 70). Copies are handed out because the operator changes
// what it applies (owner references). The zero Memo is ready to use; it is
// safe for concurrent use.
type Memo struct {
	mu   sync.Mutex
	last map[Owner]memoEntry
	// renders counts the renders the Memo could not spare; each names the
	// manifest it stored (Generation).
	renders uint64
}

type memoEntry struct {
	input      []byte
	manifest   *Manifest
	generation uint64
}

// maxMemoOwners bounds a Memo: the operator manages a handful of Istio
// resources. When full, an entry is dropped to make room.
const maxMemoOwners = 16

// Render is Render(cp), from the Memo when cp is what cp.Owner's manifest
// was last rendered from.
func (m *Memo) Render(cp *ControlPlane) (*Manifest, error) {
	return m.render(cp, nil, func() (*Manifest, error) { return Render(cp) })
}

// RenderRevisions is RenderRevisions(cp, revs), from the Memo when cp and
// revs are what cp.Owner's manifest was last rendered from.
func (m *Memo) RenderRevisions(cp *ControlPlane, revs []InstalledRevision) (*Manifest, error) {
	return m.render(cp, revs, func() (*Manifest, error) { return RenderRevisions(cp, revs) })
}

func (m *Memo) render(cp *ControlPlane, revs []InstalledRevision, render func() (*Manifest, error)) (*Manifest, error) {
	// Every field of ControlPlane reaches its JSON form
	// (TestControlPlaneJSONHoldsEveryField), so equal JSON is equal input.
	input, err := json.Marshal(struct {
		CP        *ControlPlane       `json:"cp"`
		Revisions []InstalledRevision `json:"revisions"`
		Merged    bool                `json:"merged"`
	}{cp, revs, revs != nil})
	if err != nil {
		return nil, fmt.Errorf("render %s/%s: reading its input: %w", cp.Owner.Namespace, cp.Owner.Name, err)
	}
	m.mu.Lock()
	e, ok := m.last[cp.Owner]
	m.mu.Unlock()
	if ok && bytes.Equal(e.input, input) {
		return e.manifest.DeepCopy(), nil
	}
	out, err := render()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renders++
	if m.last == nil {
		m.last = map[Owner]memoEntry{}
	}
	if _, ok := m.last[cp.Owner]; !ok && len(m.last) >= maxMemoOwners {
		for k := range m.last {
			delete(m.last, k)
			break
		}
	}
	m.last[cp.Owner] = memoEntry{input: input, manifest: out.DeepCopy(), generation: m.renders}
	return out, nil
}

// Generation names the manifest the Memo last handed out for owner: it
// stays the same while that manifest is handed out again, and changes with
// every render (0: none). A caller can so tell that what it is given is
// what it checked before, without comparing it.
func (m *Memo) Generation(owner Owner) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last[owner].generation
}

// DeepCopy returns a copy of m that shares nothing with it.
func (m *Manifest) DeepCopy() *Manifest {
	if m == nil {
		return nil
	}
	out := &Manifest{CRDs: copyObjects(m.CRDs), Objects: copyObjects(m.Objects)}
	if m.NamespaceLabels != nil {
		out.NamespaceLabels = make(map[string]map[string]string, len(m.NamespaceLabels))
		for ns, l := range m.NamespaceLabels {
			if l == nil {
				out.NamespaceLabels[ns] = nil
				continue
			}
			c := make(map[string]string, len(l))
			for k, v := range l {
				c[k] = v
			}
			out.NamespaceLabels[ns] = c
		}
	}
	return out
}

func copyObjects(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	if objs == nil {
		return nil
	}
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out
}
