package render

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// The operator reconciles the primary on every RemoteIstio change; most of
// them leave its ControlPlane as it was. The Memo renders once per input,
// gives what Render gives, and hands out copies the caller may change.
func TestMemoRendersOncePerInput(t *testing.T) {
	cp := readControlPlane(t, "testdata/sample.in.yaml")
	want := everything(t, mustRender(t, cp))
	var memo Memo
	for i := range 3 {
		got, err := memo.Render(cp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, everything(t, got)) {
			t.Fatalf("render %d from the Memo differs from Render", i+1)
		}
		// The operator sets owner references on what it applies.
		for _, o := range append(got.CRDs, got.Objects...) {
			o.SetLabels(map[string]string{"changed": "by the caller"})
		}
		got.NamespaceLabels["changed"] = map[string]string{"by": "the caller"}
	}
	if memo.renders != 1 {
		t.Errorf("three reconciles of the same input rendered %d times, want 1", memo.renders)
	}

	// A member joins: the input changed, so it renders again.
	changed := *cp
	changed.Members = append(append([]Member(nil), cp.Members...), Member{ClusterName: "remote-new", Network: cp.Network})
	got, err := memo.Render(&changed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(everything(t, mustRender(t, &changed)), everything(t, got)) {
		t.Error("the Memo's render of a changed ControlPlane differs from Render")
	}
	if memo.renders != 2 {
		t.Errorf("a changed ControlPlane rendered %d times in all, want 2", memo.renders)
	}

	// Another owner has its own entry; so do revisions.
	other := *cp
	other.Owner.Name = "other"
	if _, err := memo.Render(&other); err != nil {
		t.Fatal(err)
	}
	revs := []InstalledRevision{{Name: RevisionName(cp.Version), Version: cp.Version, Tags: []string{DefaultTag}}}
	for range 2 {
		got, err := memo.RenderRevisions(cp, revs)
		if err != nil {
			t.Fatal(err)
		}
		direct, err := RenderRevisions(cp, revs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(everything(t, direct), everything(t, got)) {
			t.Error("the Memo's RenderRevisions differs from RenderRevisions")
		}
	}
	if memo.renders != 4 {
		t.Errorf("renders = %d, want 4 (one per distinct input)", memo.renders)
	}
}

func mustRender(t *testing.T, cp *ControlPlane) *Manifest {
	t.Helper()
	m, err := Render(cp)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The Memo takes equal JSON for equal input: a field that JSON leaves out
// (unexported, or tagged "-") would let two different inputs share a
// render.
func TestControlPlaneJSONHoldsEveryField(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
			if typ.Kind() == reflect.Map {
				walk(typ.Key(), path+"[key]")
			}
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() != reflect.TypeFor[ControlPlane]().PkgPath() {
			return // the API's and Kubernetes' types are JSON types
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() || strings.Split(f.Tag.Get("json"), ",")[0] == "-" {
				t.Errorf("%s.%s is not in the JSON form of a ControlPlane, so Memo would ignore it; give it a JSON name", path, f.Name)
			}
			walk(f.Type, path+"."+f.Name)
		}
	}
	walk(reflect.TypeFor[ControlPlane](), "ControlPlane")
	if len(seen) < 10 {
		t.Errorf("walked %d of render's types, want the ten or more ControlPlane holds", len(seen))
	}
}
