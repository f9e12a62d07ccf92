package v1beta1

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// GroupVersion is the API group and version of every type in this package.
var GroupVersion = schema.GroupVersion{Group: "meshfleet.io", Version: "v1beta1"}

var (
	schemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme registers the types of this package with a scheme.
	AddToScheme = schemeBuilder.AddToScheme
)

func init() {
	schemeBuilder.Register(&Istio{}, &IstioList{}, &RemoteIstio{}, &RemoteIstioList{})
}

// Kind returns the GroupVersionKind of kind in this API version.
func Kind(kind string) schema.GroupVersionKind { return GroupVersion.WithKind(kind) }

var _ runtime.Object = &Istio{}
