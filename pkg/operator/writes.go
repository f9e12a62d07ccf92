package operator

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// APIWrites counts every write the operator sends to the API server, by verb
// and kind. A control plane in its steady state adds nothing to it.
var APIWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "meshfleet_operator_api_writes_total",
	Help: "Writes (create, update, patch, apply, delete) the operator sent to the Kubernetes API, by verb and kind.",
}, []string{"verb", "kind"})

// countWrites wraps c so that every write increments APIWrites.
func countWrites(c client.WithWatch, scheme *runtime.Scheme) (client.WithWatch, error) {
	kind := func(o runtime.Object) string {
		if gvk := o.GetObjectKind().GroupVersionKind(); gvk.Kind != "" {
			return gvk.Kind
		}
		if gvk, err := apiutil.GVKForObject(o, scheme); err == nil {
			return gvk.Kind
		}
		return "unknown"
	}
	inc := func(verb string, o runtime.Object) { APIWrites.WithLabelValues(verb, kind(o)).Inc() }
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			inc("create", o)
			return c.Create(ctx, o, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
			inc("update", o)
			return c.Update(ctx, o, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
			inc("patch", o)
			return c.Patch(ctx, o, p, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, o runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			kind := "unknown"
			switch a := o.(type) {
			case interface{ GetKind() *string }: // typed apply configurations
				if a.GetKind() != nil {
					kind = *a.GetKind()
				}
			case interface{ GetKind() string }: // unstructured ones
				kind = a.GetKind()
			}
			APIWrites.WithLabelValues("apply", kind).Inc()
			return c.Apply(ctx, o, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
			inc("delete", o)
			return c.Delete(ctx, o, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
			inc("update/"+sub, o)
			return c.SubResource(sub).Update(ctx, o, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			inc("patch/"+sub, o)
			return c.SubResource(sub).Patch(ctx, o, p, opts...)
		},
	}), nil
}
