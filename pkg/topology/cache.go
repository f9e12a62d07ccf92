package topology

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What the watcher's informers keep of each object: only what the
// topology reads (ARCHITECTURE.md decision 72). Services and
// EndpointSlices, one of each per Service and cluster, are kept as the
// small records below rather than as corev1/discoveryv1 structs; Nodes,
// Pods and namespaces keep their types with only the labels or
// annotations read. Strings repeated across objects (namespaces, node
// names, locality label values) are interned.

// cachedMeta is what client-go's cache needs of a stored object: its key
// (namespace/name) and resourceVersion (an update whose version did not
// change is taken for a resync).
type cachedMeta struct {
	namespace, name, resourceVersion string
}

// GetObjectMeta makes a record readable by meta.Accessor, which client-go's
// key function and store call; the value is built on each call, so the
// cache holds three strings per object rather than an ObjectMeta.
func (m *cachedMeta) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: m.namespace, Name: m.name, ResourceVersion: m.resourceVersion}
}

// cachedService is what buildService reads of a Service.
type cachedService struct {
	cachedMeta
	externalName bool
	// trafficDistribution is spec.trafficDistribution ("" when unset).
	trafficDistribution string
	// annotations are the meshfleet.io/ annotations and istiod's
	// traffic-distribution annotation; nil without any.
	annotations map[string]string
}

// cachedSlice is what buildService reads of an EndpointSlice.
type cachedSlice struct {
	cachedMeta
	// service is the key (namespace/name) of the Service named by the
	// label kubernetes.io/service-name; "" without one.
	service   string
	endpoints []cachedEndpoint
}

// cachedEndpoint is what buildService reads of one endpoint.
type cachedEndpoint struct {
	// node is nodeName ("" when unset; no Node has that name).
	node string
	// pod is the key (namespace/name) of the targetRef when it is a Pod
	// (the namespace defaults to the slice's); "" when it is not.
	pod       string
	addresses int32
	// ready is conditions.ready; unset counts as ready.
	ready bool
}

// intern returns the canonical copy of s, so that a value repeated over
// many objects (a namespace, a node name) is held once.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// trimService is the informers' transform for Services: a *cachedService
// of the Service (other objects pass unchanged).
func trimService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &cachedService{
		cachedMeta:   cachedMeta{namespace: intern(s.Namespace), name: s.Name, resourceVersion: s.ResourceVersion},
		externalName: s.Spec.Type == corev1.ServiceTypeExternalName,
	}
	if td := s.Spec.TrafficDistribution; td != nil {
		out.trafficDistribution = intern(*td)
	}
	for k, v := range s.Annotations {
		if strings.HasPrefix(k, annotationPrefix) || k == AnnotationTrafficDistribution {
			if out.annotations == nil {
				out.annotations = map[string]string{}
			}
			out.annotations[intern(k)] = v
		}
	}
	return out, nil
}

// annotationPrefix starts the Service annotations the topology carries
// (Service.Annotations).
const annotationPrefix = "meshfleet.io/"

// trimSlice is the informers' transform for EndpointSlices: a
// *cachedSlice of the slice (other objects pass unchanged).
func trimSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	ns := intern(es.Namespace)
	out := &cachedSlice{cachedMeta: cachedMeta{namespace: ns, name: es.Name, resourceVersion: es.ResourceVersion}}
	if n := es.Labels[discoveryv1.LabelServiceName]; n != "" {
		out.service = serviceKey(ns, n)
	}
	if len(es.Endpoints) > 0 {
		out.endpoints = make([]cachedEndpoint, len(es.Endpoints))
	}
	for i, ep := range es.Endpoints {
		e := cachedEndpoint{addresses: int32(len(ep.Addresses)), ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready}
		if ep.NodeName != nil {
			e.node = intern(*ep.NodeName)
		}
		if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
			e.pod = serviceKey(cmp.Or(ref.Namespace, es.Namespace), ref.Name)
		}
		out.endpoints[i] = e
	}
	return out, nil
}

// nodeLabelKeys are the Node labels the topology reads (NodeLocalityLabel).
var nodeLabelKeys = []string{LabelRegion, LabelZone, LabelRegionLegacy, LabelZoneLegacy, LabelSubzone}

// podLabelKeys are the Pod labels the topology reads (PodLocalityLabel).
var podLabelKeys = []string{LabelIstioLocality, LabelIstioLocalityLegacy}

// only returns the entries of m under keys (present, even if empty), with
// the values interned; nil when there are none.
func only(m map[string]string, keys []string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[k] = intern(v)
		}
	}
	return out
}

// trimNode is the informers' transform for Nodes: the Node's name,
// resourceVersion and locality labels (no status).
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: intern(n.Name), ResourceVersion: n.ResourceVersion, Labels: only(n.Labels, nodeLabelKeys)}}, nil
}

// trimPod is the informers' transform for Pod metadata: the Pod's key,
// resourceVersion and locality labels.
func trimPod(obj any) (any, error) {
	return trimMetadata(obj, podLabelKeys, nil), nil
}

// namespaceAnnotationKeys are the namespace annotations the topology reads.
var namespaceAnnotationKeys = []string{AnnotationTrafficDistribution}

// trimNamespace is the informers' transform for namespace metadata: the
// namespace's name, resourceVersion and traffic-distribution annotation.
func trimNamespace(obj any) (any, error) {
	return trimMetadata(obj, nil, namespaceAnnotationKeys), nil
}

// trimMetadata keeps of object metadata its key, resourceVersion, and the
// labels and annotations under the keys given.
func trimMetadata(obj any, labels, annotations []string) any {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace: intern(m.Namespace), Name: m.Name, ResourceVersion: m.ResourceVersion,
		Labels: only(m.Labels, labels), Annotations: only(m.Annotations, annotations),
	}}
}

// sliceIndex holds one cluster's EndpointSlices by the key of their
// Service, as the informer's event handler saw them: a list per Service
// (most have one slice), where client-go's indexer would keep a set.
type sliceIndex struct {
	mu    sync.RWMutex
	bySvc map[string][]*cachedSlice
}

// replace records that old (nil when added) became cur (nil when
// deleted).
func (x *sliceIndex) replace(old, cur *cachedSlice) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.bySvc == nil {
		x.bySvc = map[string][]*cachedSlice{}
	}
	if old != nil {
		x.remove(old.service, old.name)
	}
	if cur != nil && cur.service != "" {
		list := x.remove(cur.service, cur.name)
		x.bySvc[cur.service] = append(list, cur)
	}
}

// remove drops the slice named name from Service svc's list and returns
// what is left; x.mu is held.
func (x *sliceIndex) remove(svc, name string) []*cachedSlice {
	list := slices.DeleteFunc(x.bySvc[svc], func(es *cachedSlice) bool { return es.name == name })
	if len(list) == 0 {
		delete(x.bySvc, svc)
		return nil
	}
	x.bySvc[svc] = list
	return list
}

// of returns the slices of Service key.
func (x *sliceIndex) of(key string) []*cachedSlice {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.bySvc[key])
}

// all returns every slice that names a Service.
func (x *sliceIndex) all() []*cachedSlice {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []*cachedSlice
	for _, list := range x.bySvc {
		out = append(out, list...)
	}
	return out
}
