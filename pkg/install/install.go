// Package install puts meshfleet into clusters the way a user does with
// meshctl: it assembles the manifests (meshfleet's CRDs, the operator, an
// Istio resource), applies them, and follows the resources' conditions until
// they are Ready or say what is wrong. It also joins and removes remote
// clusters, and uninstalls.
package install

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/crds"
	"github.com/meshfleet/meshfleet/manifests"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/version"
)

// FieldManager owns what meshctl applies.
const FieldManager = "meshctl"

// OperatorNamespace is where the operator runs.
const OperatorNamespace = "meshfleet-system"

// CRDs returns meshfleet's CustomResourceDefinitions.
func CRDs() ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		objs, err := readFS(crds.FS, f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Operator returns the operator's in-cluster manifests with image set, or
// this build's image (pkg/version) when image is "".
func Operator(image string) ([]*unstructured.Unstructured, error) {
	if image == "" {
		image = version.Image()
	}
	var out []*unstructured.Unstructured
	for _, f := range []string{"operator/rbac/role.yaml", "operator/operator.yaml"} {
		objs, err := readFS(manifests.Operator, f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	for _, o := range out {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for i := range containers {
			c := containers[i].(map[string]any)
			c["image"] = image
			// The operator runs the locality server from the same image.
			env, _ := c["env"].([]any)
			for j := range env {
				if e, ok := env[j].(map[string]any); ok && e["name"] == "MESHFLEET_IMAGE" {
					e["value"] = image
				}
			}
		}
		if err := unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ToUnstructured converts a typed object, keeping its kind.
func ToUnstructured(obj runtime.Object, gvk metav1.TypeMeta) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(gvk.APIVersion)
	u.SetKind(gvk.Kind)
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

// Namespace is a Namespace object.
func Namespace(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
}

// Apply applies objs with server-side apply, CRDs first, and waits for the
// CRDs to be served before the rest.
func Apply(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) error {
	a := &apply.Applier{Client: c, FieldManager: FieldManager}
	var crdObjs, rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crdObjs = append(crdObjs, o)
		} else {
			rest = append(rest, o)
		}
	}
	if _, err := a.Apply(ctx, crdObjs); err != nil {
		return err
	}
	if len(crdObjs) > 0 {
		if err := waitServed(ctx, c); err != nil {
			return err
		}
	}
	_, err := a.Apply(ctx, rest)
	return err
}

// waitServed waits until the API server serves meshfleet's kinds.
func waitServed(ctx context.Context, c client.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.List(ctx, &v1beta1.IstioList{}, client.Limit(1))
		if err == nil {
			err = c.List(ctx, &v1beta1.RemoteIstioList{}, client.Limit(1))
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("meshfleet's CRDs are not served after 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Print writes objs as a YAML stream.
func Print(w io.Writer, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "---\n%s", b)
	}
	return nil
}

// Wait follows obj's conditions, printing each change to progress, until
// condition until is True (nil), the resource fails (an error quoting the
// failing condition) or ctx ends.
func Wait(ctx context.Context, c client.Client, obj client.Object, until string, progress io.Writer) error {
	key := client.ObjectKeyFromObject(obj)
	kind := fmt.Sprintf("%T", obj)
	kind = kind[strings.LastIndex(kind, ".")+1:]
	seen := map[string]string{}
	for {
		if err := c.Get(ctx, key, obj); err != nil {
			return fmt.Errorf("read %s %s: %w", kind, key, err)
		}
		conds, phase := conditionsOf(obj)
		for _, cond := range conds {
			line := fmt.Sprintf("%s %s", cond.Status, cond.Message)
			if seen[cond.Type] != line && progress != nil {
				seen[cond.Type] = line
				fmt.Fprintf(progress, "  %-27s %-7s %s\n", cond.Type, cond.Status, cond.Message)
			}
		}
		if meta.IsStatusConditionTrue(conds, until) {
			return nil
		}
		if phase == v1beta1.PhaseFailed {
			for _, cond := range conds {
				if cond.Status == metav1.ConditionFalse {
					return fmt.Errorf("%s %s failed at %s (%s): %s", kind, key, cond.Type, cond.Reason, cond.Message)
				}
			}
			return fmt.Errorf("%s %s failed", kind, key)
		}
		select {
		case <-ctx.Done():
			for _, cond := range conds {
				if cond.Status != metav1.ConditionTrue {
					return fmt.Errorf("%s %s is not %s yet: %s is %s (%s): %s", kind, key, until, cond.Type, cond.Status, cond.Reason, cond.Message)
				}
			}
			return fmt.Errorf("%s %s is not %s yet: %w", kind, key, until, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func conditionsOf(obj client.Object) ([]metav1.Condition, v1beta1.Phase) {
	switch o := obj.(type) {
	case *v1beta1.Istio:
		return o.Status.Conditions, o.Status.Phase
	case *v1beta1.RemoteIstio:
		return o.Status.Conditions, o.Status.Phase
	}
	return nil, ""
}

// Uninstall deletes the Istio resources of namespace and waits until the
// operator has removed their control planes (their finalizers), then the
// operator itself; with purge also meshfleet's CRDs.
func Uninstall(ctx context.Context, c client.Client, namespace string, purge bool, progress io.Writer) error {
	var remotes v1beta1.RemoteIstioList
	if err := c.List(ctx, &remotes, client.InNamespace(namespace)); err != nil && !meta.IsNoMatchError(err) {
		return fmt.Errorf("list RemoteIstio resources: %w", err)
	}
	var istios v1beta1.IstioList
	if err := c.List(ctx, &istios, client.InNamespace(namespace)); err != nil && !meta.IsNoMatchError(err) {
		return fmt.Errorf("list Istio resources: %w", err)
	}
	var objs []client.Object
	for i := range remotes.Items {
		objs = append(objs, &remotes.Items[i])
	}
	for i := range istios.Items {
		objs = append(objs, &istios.Items[i])
	}
	for _, o := range objs {
		fmt.Fprintf(progress, "• deleting %T %s/%s\n", o, o.GetNamespace(), o.GetName())
		if err := client.IgnoreNotFound(c.Delete(ctx, o)); err != nil {
			return fmt.Errorf("delete %s: %w", o.GetName(), err)
		}
	}
	for _, o := range objs {
		if err := waitGone(ctx, c, o); err != nil {
			return fmt.Errorf("%s/%s is still being removed (%w): the operator removes it; check `kubectl -n %s describe` it and the operator's logs", o.GetNamespace(), o.GetName(), err, o.GetNamespace())
		}
	}
	ops, err := Operator("")
	if err != nil {
		return err
	}
	if purge {
		crdObjs, err := CRDs()
		if err != nil {
			return err
		}
		ops = append(ops, crdObjs...)
	}
	for _, o := range ops {
		if o.GetKind() == "Namespace" && !purge {
			continue
		}
		if err := c.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			return fmt.Errorf("delete %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	fmt.Fprintln(progress, "• operator removed")
	return nil
}

func waitGone(ctx context.Context, c client.Client, o client.Object) error {
	for {
		err := c.Get(ctx, client.ObjectKeyFromObject(o), o)
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// KubeconfigSecret is the Secret a RemoteIstio reads its cluster's
// kubeconfig from.
func KubeconfigSecret(namespace, name string, kubeconfig []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Data:       map[string][]byte{"kubeconfig": kubeconfig},
	}
}

func readFS(fsys fs.FS, name string) ([]*unstructured.Unstructured, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	out, err := decodeAll(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// decodeAll decodes every YAML or JSON document of r.
func decodeAll(r io.Reader) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for {
		m := map[string]any{}
		if err := dec.Decode(&m); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, err
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}
