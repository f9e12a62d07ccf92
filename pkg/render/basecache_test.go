package render

import (
	"bytes"
	"testing"

	"sigs.k8s.io/yaml"
)

// A caller that changes a rendered manifest (the operator labels and
// applies it) must not change the next render: the cached base objects are
// handed out as copies.
func TestBaseCacheHandsOutCopies(t *testing.T) {
	cp := readControlPlane(t, "testdata/sample.in.yaml")
	first, err := Render(cp)
	if err != nil {
		t.Fatal(err)
	}
	want := everything(t, first)
	for _, o := range append(first.CRDs, first.Objects...) {
		o.SetLabels(map[string]string{"changed": "by the caller"})
		o.Object["spec"] = nil
	}
	again, err := Render(cp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, everything(t, again)) {
		t.Error("changing a rendered manifest changed the next render of the same ControlPlane")
	}
}

// everything prints a manifest in full, CRDs included.
func everything(t *testing.T, m *Manifest) []byte {
	var b bytes.Buffer
	for _, o := range append(m.CRDs, m.Objects...) {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes()
}

// BenchmarkRender prints the cost of a primary's and a remote's full render
// next to the base chart rendered from the chart each time (the baseline:
// what every render paid before the base objects were cached) and taken
// from the cache, and a primary's render from a Memo whose input did not
// change.
func BenchmarkRender(b *testing.B) {
	primary := readControlPlane(b, "testdata/sample.in.yaml")
	remote := readControlPlane(b, "testdata/remote-sample.in.yaml")
	minor := minorOf(primary.Version)
	b.Run("base chart rendered (baseline)", func(b *testing.B) {
		for b.Loop() {
			if _, err := renderObjects(minor, chartBase, istiodRelease, primary.Namespace, baseValues(primary.Namespace)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("base chart cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := baseObjects(minor, primary.Namespace); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, cp := range map[string]*ControlPlane{"primary": primary, "remote": remote} {
		b.Run("render "+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Render(cp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// What the operator's reconcile of the primary pays when a RemoteIstio
	// changed but the ControlPlane did not (decision 70), next to "render
	// primary" above, what it paid before.
	b.Run("render primary, input unchanged (Memo)", func(b *testing.B) {
		var memo Memo
		for b.Loop() {
			if _, err := memo.Render(primary); err != nil {
				b.Fatal(err)
			}
		}
	})
}
