package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Applier applies objects with server-side apply under one field manager.
type Applier struct {
	// Client reads (ideally from a cache) and writes objects.
	Client client.Client
	// Reader, when set, is read instead of Client: for kinds the cache does
	// not hold.
	Reader client.Reader
	// Uncached, when set, is asked before an object is created whether it
	// really is missing: a cache that holds only meshfleet's objects does
	// not see a user's object of the same name.
	Uncached client.Reader
	// FieldManager owns the fields meshfleet applies.
	FieldManager string
	// OwnerUID is the UID of the resource the objects belong to. It is
	// recorded on every object created (OwnerUIDAnnotation); an existing
	// object that does not belong to it is left alone and reported as a
	// ConflictError, unless annotated AdoptAnnotation=true. Prune deletes
	// only objects that belong to it. Leave it empty only for objects shared
	// with others whose fields meshfleet merely adds to (namespace labels,
	// Istio's CRDs).
	OwnerUID types.UID
}

// Result lists what one pass did, as kind/namespace/name keys.
type Result struct {
	Created []string
	Updated []string
	// Drift holds, for each updated object, the first field found changed.
	Drift     map[string]string
	Unchanged int
	Deleted   []string
}

// Writes is the number of API writes the pass made.
func (r Result) Writes() int { return len(r.Created) + len(r.Updated) + len(r.Deleted) }

// Apply makes each object match its desired form. An object that is missing
// is created; one whose live form does not cover the desired form (someone
// edited or removed a field we own) is re-applied, taking ownership back;
// one that already matches is left alone, so a steady-state pass writes
// nothing. All objects are read first: when any of them exists but does not
// belong to OwnerUID, Apply writes nothing and returns a *ConflictError.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured) (Result, error) {
	var res Result
	type planned struct {
		desired *unstructured.Unstructured
		live    *unstructured.Unstructured // nil when missing
	}
	plan := make([]planned, 0, len(objs))
	var conflicts []Conflict
	for _, desired := range objs {
		desired, err := a.withOwner(desired)
		if err != nil {
			return res, err
		}
		live, err := a.live(ctx, desired)
		if err != nil {
			return res, err
		}
		if live != nil && a.OwnerUID != "" && !Owned(live, desired, a.OwnerUID, a.FieldManager) && !adoptable(live) {
			conflicts = append(conflicts, Conflict{Key: keyOf(desired), Holder: holder(live)})
			continue
		}
		plan = append(plan, planned{desired, live})
	}
	if len(conflicts) > 0 {
		return res, &ConflictError{Conflicts: conflicts}
	}
	for _, p := range plan {
		key := keyOf(p.desired)
		if p.live == nil {
			if err := a.ssa(ctx, p.desired); err != nil {
				return res, err
			}
			res.Created = append(res.Created, key)
			continue
		}
		ok, at := Covers(p.live.Object, p.desired.Object)
		if ok {
			res.Unchanged++
			continue
		}
		if res.Drift == nil {
			res.Drift = map[string]string{}
		}
		res.Drift[key] = at
		if err := a.ssa(ctx, p.desired); err != nil {
			return res, err
		}
		res.Updated = append(res.Updated, key)
	}
	return res, nil
}

// live reads the live copy of desired, nil when it does not exist.
func (a *Applier) live(ctx context.Context, desired *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	key := keyOf(desired)
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(desired.GroupVersionKind())
	err := a.reader().Get(ctx, client.ObjectKeyFromObject(desired), live)
	if apierrors.IsNotFound(err) && a.Uncached != nil {
		err = a.Uncached.Get(ctx, client.ObjectKeyFromObject(desired), live)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return live, nil
}

// withOwner returns a copy of o that records its owner and its digest.
func (a *Applier) withOwner(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if a.OwnerUID == "" {
		return withHash(o)
	}
	o = o.DeepCopy()
	ann := o.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[OwnerUIDAnnotation] = string(a.OwnerUID)
	o.SetAnnotations(ann)
	return withHash(o)
}

// HashAnnotation records a digest of the configuration last applied. Covers
// cannot see a field that was dropped from the desired object (live still has
// it); the digest changes then, and the object is re-applied, which removes
// the field.
const HashAnnotation = "meshfleet.io/applied-hash"

func withHash(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	o = o.DeepCopy()
	b, err := json.Marshal(o.Object)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", keyOf(o), err)
	}
	sum := sha256.Sum256(b)
	a := o.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[HashAnnotation] = hex.EncodeToString(sum[:8])
	o.SetAnnotations(a)
	return o, nil
}

func (a *Applier) reader() client.Reader {
	if a.Reader != nil {
		return a.Reader
	}
	return a.Client
}

// Release gives up every field the field manager owns on obj (applying an
// empty configuration), which removes those fields unless another manager
// also set them.
func (a *Applier) Release(ctx context.Context, obj *unstructured.Unstructured) error {
	empty := &unstructured.Unstructured{}
	empty.SetGroupVersionKind(obj.GroupVersionKind())
	empty.SetName(obj.GetName())
	empty.SetNamespace(obj.GetNamespace())
	return a.ssa(ctx, empty)
}

func (a *Applier) ssa(ctx context.Context, obj *unstructured.Unstructured) error {
	u := obj.DeepCopy()
	u.SetResourceVersion("")
	u.SetManagedFields(nil)
	err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(a.FieldManager), client.ForceOwnership)
	if err != nil {
		return fmt.Errorf("apply %s: %w", keyOf(obj), err)
	}
	return nil
}

// Prune deletes objects of the given kinds that carry the owner's labels,
// belong to OwnerUID (labels alone prove nothing: anyone can set them) and
// are not in keep (keys as returned by Key). Kinds the API server does not
// serve are skipped.
func (a *Applier) Prune(ctx context.Context, owner labels.Set, kinds []schema.GroupVersionKind, keep map[string]bool) (Result, error) {
	var res Result
	if a.OwnerUID == "" {
		return res, fmt.Errorf("prune %v: no owner UID to check ownership against", owner)
	}
	desired := &unstructured.Unstructured{}
	desired.SetLabels(owner)
	for _, gvk := range kinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := a.Client.List(ctx, list, client.MatchingLabels(owner)); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue
			}
			return res, fmt.Errorf("list %s: %w", gvk.Kind, err)
		}
		sort.Slice(list.Items, func(i, j int) bool { return keyOf(&list.Items[i]) < keyOf(&list.Items[j]) })
		for i := range list.Items {
			o := &list.Items[i]
			if keep[keyOf(o)] || o.GetDeletionTimestamp() != nil || !Owned(o, desired, a.OwnerUID, a.FieldManager) {
				continue
			}
			if err := a.Client.Delete(ctx, o, client.PropagationPolicy("Background")); err != nil && !apierrors.IsNotFound(err) {
				return res, fmt.Errorf("delete %s: %w", keyOf(o), err)
			}
			res.Deleted = append(res.Deleted, keyOf(o))
		}
	}
	return res, nil
}

// Key names an object as kind/namespace/name, the form Result and Prune use.
func Key(o *unstructured.Unstructured) string { return keyOf(o) }

func keyOf(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}
