package apply

import (
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Covers reports whether live already holds every field of desired with the
// same value, so applying desired would change nothing that we own. Fields
// only in live (defaults, status, other managers' fields) are ignored. It
// returns the path of the first difference, for logs.
func Covers(live, desired map[string]any) (bool, string) {
	return coversValue(live, desired, "")
}

func coversValue(live, desired any, path string) (bool, string) {
	switch d := desired.(type) {
	case nil:
		return true, ""
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			if len(d) == 0 && live == nil {
				return true, ""
			}
			return false, path
		}
		for k, dv := range d {
			if path == "" && (k == "status") {
				continue
			}
			lv, present := l[k]
			if !present {
				if isEmpty(dv) {
					continue
				}
				return false, path + "." + k
			}
			if ok, at := coversValue(lv, dv, path+"."+k); !ok {
				return false, at
			}
		}
		return true, ""
	case []any:
		l, ok := live.([]any)
		if !ok {
			if len(d) == 0 && live == nil {
				return true, ""
			}
			return false, path
		}
		if len(l) == len(d) {
			for i := range d {
				if ok, at := coversValue(l[i], d[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
					return false, at
				}
			}
			return true, ""
		}
		// Other managers may have added entries: each of ours must still be there.
		for i, dv := range d {
			found := false
			for _, lv := range l {
				if ok, _ := coversValue(lv, dv, ""); ok {
					found = true
					break
				}
			}
			if !found {
				return false, fmt.Sprintf("%s[%d]", path, i)
			}
		}
		return true, ""
	default:
		if scalarEqual(live, desired) {
			return true, ""
		}
		return false, path
	}
}

// isEmpty reports whether v is a zero value that the API server drops when
// it serializes a typed object (omitempty): absent in live means equal.
func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case bool:
		return !t
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

// scalarEqual compares two decoded JSON/YAML scalars: numbers by value
// whatever their Go type, and strings that are resource quantities by
// quantity (the API server rewrites 2048Mi as 2Gi).
func scalarEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	if sa, ok := a.(string); ok {
		sb, ok := b.(string)
		if !ok {
			return false
		}
		if sa == sb {
			return true
		}
		qa, errA := resource.ParseQuantity(sa)
		qb, errB := resource.ParseQuantity(sb)
		return errA == nil && errB == nil && qa.Cmp(qb) == 0
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case float32:
		return float64(n), true
	}
	return 0, false
}
