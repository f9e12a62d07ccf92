package rulesync

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/meshfleet/pkg/locality"
)

// AnnotationHash holds the content hash (ObjectHash) of a written rule, so
// a person or tool can see which translation it came from.
const AnnotationHash = "meshfleet.io/locality-hash"

// Live is one of the server's rules as the cluster holds it.
type Live struct {
	// Namespace is where the rule lives: the server's namespace, or a
	// user's rule's namespace for a rule istiod merges into it.
	Namespace string
	Name      string
	UID       string
	// Hash is ObjectHash of the live object ("" if unreadable).
	Hash string
}

// Write is one rule to create or update.
type Write struct {
	Rule *locality.Rule
	Hash string
	// UID is the live object's UID for an update (a precondition); empty
	// for a create.
	UID string
}

// Delete is one rule to delete.
type Delete struct {
	Namespace, Name, UID string
}

// Plan is what Decide asks to do.
type Plan struct {
	Create, Update []Write
	Delete         []Delete
	// Held names the rules kept as they are although the translation
	// differs (changed or gone), and Reason says why.
	Held   []string
	Reason string
	// Unchanged counts the desired rules already live with the same hash.
	Unchanged int
}

// Writes is the number of API writes the plan makes.
func (p Plan) Writes() int { return len(p.Create) + len(p.Update) + len(p.Delete) }

// Decide compares the live rules (by name) with the desired ones, given
// the sync state of the member clusters (name → has synced since start).
//
// Degrade, never withdraw: unless there is at least one member and every
// member has synced, the desired set is incomplete (an unsynced member's
// endpoints are missing from the topology), so only rules for hosts that
// have none yet are created; every live rule is kept as it is and listed
// in Held (a rule for a host its live namespace-wide rule covers counts as
// one it has: see Group). A member that synced once and is unreachable now still counts
// as synced: its informers keep its last known objects, so its share of
// the topology stays what it last was.
func Decide(live map[string]Live, desired []*locality.Rule, members map[string]bool) (Plan, error) {
	return decide(live, desired, members, Hash)
}

// decide is Decide with the rules' hashes from hash (a cache).
func decide(live map[string]Live, desired []*locality.Rule, members map[string]bool, hash func(*locality.Rule) (string, error)) (Plan, error) {
	var p Plan
	var unsynced []string
	for name, ok := range members {
		if !ok {
			unsynced = append(unsynced, name)
		}
	}
	sort.Strings(unsynced)
	complete := len(members) > 0 && len(unsynced) == 0
	switch {
	case len(members) == 0:
		p.Reason = "no member cluster known yet"
	case !complete:
		p.Reason = "member clusters not synced since start: " + strings.Join(unsynced, ", ")
	}
	want := make(map[string]bool, len(desired))
	for _, r := range desired {
		name := r.Metadata.Name
		if want[name] {
			return Plan{}, fmt.Errorf("two generated DestinationRules are named %s", name)
		}
		want[name] = true
		h, err := hash(r)
		if err != nil {
			return Plan{}, err
		}
		l, ok := live[name]
		switch {
		case !ok && !complete && live[groupOf(name)].Name != "":
			// The host has a rule: its namespace's (see Group).
			p.Held = append(p.Held, name)
		case !ok:
			p.Create = append(p.Create, Write{Rule: r, Hash: h})
		case l.Namespace != "" && l.Namespace != r.Metadata.Namespace:
			// The rule moves (a user's rule to merge into came or went):
			// the old one goes first, the next sync creates the new one.
			if complete {
				p.Delete = append(p.Delete, Delete{Namespace: l.Namespace, Name: name, UID: l.UID})
			} else {
				p.Held = append(p.Held, name)
			}
		case l.Hash == h:
			p.Unchanged++
		case complete:
			p.Update = append(p.Update, Write{Rule: r, Hash: h, UID: l.UID})
		default:
			p.Held = append(p.Held, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(live)) {
		if want[name] {
			continue
		}
		if complete {
			p.Delete = append(p.Delete, Delete{Namespace: live[name].Namespace, Name: name, UID: live[name].UID})
		} else {
			p.Held = append(p.Held, name)
		}
	}
	sort.Strings(p.Held)
	return p, nil
}

// Hash is the content hash of the object a rule is written as.
func Hash(r *locality.Rule) (string, error) {
	obj, err := toObject(r, "", "")
	if err != nil {
		return "", err
	}
	return ObjectHash(obj)
}

// ObjectHash is a short digest of what the server sets in a rule's object:
// its namespace, name, spec (canonical JSON, so numbers compare by value),
// the managed-by label and the generated-for annotation. It is computed
// from the live object too, so an edit of the spec by hand is noticed and
// undone, while labels or annotations others add are left alone.
func ObjectHash(u *unstructured.Unstructured) (string, error) {
	spec, err := json.Marshal(u.Object["spec"]) // map keys sorted
	if err != nil {
		return "", fmt.Errorf("encoding DestinationRule %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, s := range []string{u.GetNamespace(), u.GetName(), string(spec),
		u.GetLabels()[locality.LabelManagedBy], u.GetAnnotations()[locality.AnnotationGenerated]} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		_, _ = io.WriteString(h, s)
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// toObject is the Kubernetes object of a rule, with its content hash; a
// uid makes the write a precondition on that object.
func toObject(r *locality.Rule, hash, uid string) (*unstructured.Unstructured, error) {
	raw, err := protojson.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding DestinationRule %s: %w", r.Metadata.Name, err)
	}
	spec := map[string]any{}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("encoding DestinationRule %s: %w", r.Metadata.Name, err)
	}
	annotations := map[string]any{AnnotationHash: hash}
	for k, v := range r.Metadata.Annotations {
		annotations[k] = v
	}
	lbls := map[string]any{}
	for k, v := range r.Metadata.Labels {
		lbls[k] = v
	}
	meta := map[string]any{"name": r.Metadata.Name, "namespace": r.Metadata.Namespace, "labels": lbls, "annotations": annotations}
	if uid != "" {
		meta["uid"] = uid
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": GVR.GroupVersion().String(), "kind": "DestinationRule", "metadata": meta, "spec": spec,
	}}, nil
}

// hashCache remembers the content hashes of desired rules (by pointer:
// the translation and the grouping keep the rules of Services that did not
// change) and of live objects (by name and resourceVersion), so that a
// plan hashes only what changed. It is used under the server's syncMu.
type hashCache struct {
	rules map[*locality.Rule]string
	live  map[string][2]string // name → resourceVersion, hash
}

func newHashCache() *hashCache {
	return &hashCache{rules: map[*locality.Rule]string{}, live: map[string][2]string{}}
}

// rule returns Hash(r), cached.
func (c *hashCache) rule(r *locality.Rule) (string, error) {
	if h, ok := c.rules[r]; ok {
		return h, nil
	}
	h, err := Hash(r)
	if err == nil {
		c.rules[r] = h
	}
	return h, err
}

// object returns ObjectHash(u) ("" if unreadable: rewritten), cached.
func (c *hashCache) object(u *unstructured.Unstructured) string {
	if e, ok := c.live[u.GetName()]; ok && e[0] == u.GetResourceVersion() && u.GetResourceVersion() != "" {
		return e[1]
	}
	h, err := ObjectHash(u)
	if err != nil {
		h = ""
	}
	c.live[u.GetName()] = [2]string{u.GetResourceVersion(), h}
	return h
}

// keep drops every entry but those of desired and live (after a plan that
// compared every rule).
func (c *hashCache) keep(desired []*locality.Rule, live map[string]Live) {
	rules := make(map[*locality.Rule]string, len(desired))
	for _, r := range desired {
		if h, ok := c.rules[r]; ok {
			rules[r] = h
		}
	}
	c.rules = rules
	for name := range c.live {
		if _, ok := live[name]; !ok {
			delete(c.live, name)
		}
	}
}
