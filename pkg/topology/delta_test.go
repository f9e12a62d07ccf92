package topology

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// world is the objects of a few clusters, changed at random: the input of
// the incremental path (updatePart, mergeKeys) and of the full one
// (buildPart, merge), which must agree.
type world struct {
	r        *rand.Rand
	clusters []*clusterObjects
	pods     []map[string]*metav1.PartialObjectMetadata
	nsAnn    []map[string]map[string]string
}

var (
	worldNS    = []string{"a", "a-b", "b"}
	worldNames = []string{"s0", "s1", "s2", "s3", "s4"}
	worldNodes = []string{"n0", "n1", "n2"}
)

func newWorld(seed uint64) *world {
	w := &world{r: rand.New(rand.NewPCG(seed, 1))}
	for c := range 3 {
		in := &clusterObjects{name: fmt.Sprintf("c%d", c), domain: "cluster.local"}
		pods := map[string]*metav1.PartialObjectMetadata{}
		ann := map[string]map[string]string{}
		in.pod = func(k string) (*metav1.PartialObjectMetadata, bool) { p, ok := pods[k]; return p, ok }
		in.namespace = func(ns string) map[string]string { return ann[ns] }
		for _, n := range worldNodes {
			in.nodes = append(in.nodes, node(n, map[string]string{LabelRegion: fmt.Sprintf("r%d", w.r.IntN(3)), LabelZone: "z"}))
		}
		w.clusters, w.pods, w.nsAnn = append(w.clusters, in), append(w.pods, pods), append(w.nsAnn, ann)
	}
	for range 40 {
		w.change()
	}
	return w
}

func (w *world) pick(xs []string) string { return xs[w.r.IntN(len(xs))] }

// change makes one random change in one cluster and returns the cluster
// and what an informer handler would mark.
func (w *world) change() (int, dirtySet) {
	c := w.r.IntN(len(w.clusters))
	in := w.clusters[c]
	var d dirtySet
	ns, name := w.pick(worldNS), w.pick(worldNames)
	key := serviceKey(ns, name)
	switch w.r.IntN(8) {
	case 0: // a Service added, changed or removed
		i := slices.IndexFunc(in.services, func(s *cachedService) bool { return s.namespace == ns && s.name == name })
		if i >= 0 && w.r.IntN(3) == 0 {
			in.services = slices.Delete(in.services, i, i+1)
		} else {
			ann := map[string]string{}
			switch w.r.IntN(4) {
			case 0:
				ann["meshfleet.io/locality"] = "off"
			case 1:
				ann[AnnotationTrafficDistribution] = "PreferClose"
			}
			svcType := corev1.ServiceTypeClusterIP
			if w.r.IntN(6) == 0 {
				svcType = corev1.ServiceTypeExternalName
			}
			s := service(ns, name, ann, func(s *corev1.Service) { s.Spec.Type = svcType })
			if i >= 0 {
				in.services[i] = s
			} else {
				in.services = append(in.services, s)
			}
		}
		d.mark(&d.services, key)
	case 1, 2, 3: // an EndpointSlice added, changed or removed; it may move to another Service
		sname := key + "-" + fmt.Sprint(w.r.IntN(2))
		i := slices.IndexFunc(in.slices, func(es *cachedSlice) bool { return es.namespace+"/"+es.name == sname })
		if i >= 0 {
			d.mark(&d.services, in.slices[i].service)
		}
		if i >= 0 && w.r.IntN(4) == 0 {
			in.slices = slices.Delete(in.slices, i, i+1)
			break
		}
		owner := name
		if w.r.IntN(8) == 0 {
			owner = w.pick(worldNames)
		}
		var eps []endpoint
		for range w.r.IntN(4) {
			e := endpoint{node: w.pick(worldNodes), ready: w.r.IntN(3) > 0}
			if w.r.IntN(3) == 0 {
				e.pod = "p" + fmt.Sprint(w.r.IntN(4))
			}
			eps = append(eps, e)
		}
		es := slice(ns, owner, sname[len(ns)+1:], eps...)
		if i >= 0 {
			in.slices[i] = es
		} else {
			in.slices = append(in.slices, es)
		}
		d.mark(&d.services, es.service)
	case 4: // a Pod's locality label
		pk := ns + "/p" + fmt.Sprint(w.r.IntN(4))
		if w.r.IntN(2) == 0 {
			delete(w.pods[c], pk)
		} else {
			w.pods[c][pk] = &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelIstioLocality: fmt.Sprintf("r%d.z%d", w.r.IntN(4), w.r.IntN(2))}}}
		}
		d.mark(&d.pods, pk)
	case 5: // a namespace's traffic distribution
		if w.r.IntN(2) == 0 {
			delete(w.nsAnn[c], ns)
		} else {
			w.nsAnn[c][ns] = map[string]string{AnnotationTrafficDistribution: "PreferSameZone"}
		}
		d.mark(&d.namespaces, ns)
	case 6: // a Node's region
		in.nodes[w.r.IntN(len(in.nodes))] = node(w.pick(worldNodes), map[string]string{LabelRegion: fmt.Sprintf("r%d", w.r.IntN(4)), LabelZone: "z"})
		d.all = true
	case 7: // nothing relevant (a resync)
	}
	return c, d
}

// TestIncrementalEqualsFull changes clusters at random, one object at a
// time, and checks after each change that the parts and the Topology kept
// up to date incrementally (what Watcher.Changes does) equal the ones
// built from scratch (Watcher.Snapshot before).
func TestIncrementalEqualsFull(t *testing.T) {
	for seed := range uint64(30) {
		w := newWorld(seed)
		parts := make([]*part, len(w.clusters))
		for i, in := range w.clusters {
			parts[i] = buildPart(*in)
		}
		configCluster := []string{"", "c1"}[seed%2]
		topo := merge(parts, configCluster)
		for step := range 200 {
			c, d := w.change()
			if d.all {
				parts[c] = buildPart(*w.clusters[c])
				topo = merge(parts, configCluster)
			} else {
				keys := parts[c].keysOf(d.services, d.pods, d.namespaces)
				updatePart(parts[c], *w.clusters[c], keys)
				topo = mergeKeys(topo, parts, keys)
			}
			full := buildPart(*w.clusters[c])
			if diff := cmp.Diff(full, parts[c], cmp.AllowUnexported(part{})); diff != "" {
				t.Fatalf("seed %d step %d: cluster %s's part, incremental (+) against built from scratch (-):\n%s", seed, step, w.clusters[c].name, diff)
			}
			if diff := cmp.Diff(merge(parts, configCluster), topo); diff != "" {
				t.Fatalf("seed %d step %d: topology, incremental (+) against merged from scratch (-):\n%s", seed, step, diff)
			}
		}
	}
}
