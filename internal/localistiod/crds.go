package localistiod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/manifests"
)

// CRDFile is where Istio's CRDs live in manifests.Charts: those of the chart
// set of the Istio module the tests build istiod from (1.31).
const CRDFile = "charts/istio/1.31/base/files/crd-all.gen.yaml"

// crdFieldManager owns the fields InstallCRDs applies.
const crdFieldManager = "meshfleet-localistiod"

// InstallCRDs applies Istio's CRDs (CRDFile from the embedded charts) to the
// cluster cfg points at, with server-side apply, and waits until each is
// Established. ctx bounds the whole operation.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	data, err := manifests.Charts.ReadFile(CRDFile)
	if err != nil {
		return fmt.Errorf("installing Istio CRDs: reading %s: %w", CRDFile, err)
	}
	return ApplyCRDs(ctx, cfg, data)
}

// ApplyCRDs applies the CustomResourceDefinitions in the multi-document YAML
// data with server-side apply and waits until each is Established.
func ApplyCRDs(ctx context.Context, cfg *rest.Config, data []byte) error {
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("applying CRDs: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("applying CRDs: building client for %s: %w", cfg.Host, err)
	}
	crds, err := decodeCRDs(data)
	if err != nil {
		return fmt.Errorf("applying CRDs: %w", err)
	}
	for _, u := range crds {
		ac := client.ApplyConfigurationFromUnstructured(u)
		if err := c.Apply(ctx, ac, client.FieldOwner(crdFieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying CRD %s: %w", u.GetName(), err)
		}
	}
	for _, u := range crds {
		if err := waitEstablished(ctx, c, u.GetName()); err != nil {
			return err
		}
	}
	return nil
}

// decodeCRDs splits multi-document YAML into objects, skipping empty
// documents and refusing anything that is not a CustomResourceDefinition.
func decodeCRDs(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decoding YAML document %d: %w", i, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("YAML document %d is a %s %q, not a CustomResourceDefinition", i, u.GetKind(), u.GetName())
		}
		out = append(out, u)
	}
}

// waitEstablished polls the CRD until its Established condition is True.
func waitEstablished(ctx context.Context, c client.Client, name string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := c.Get(ctx, client.ObjectKey{Name: name}, crd)
		if err == nil {
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not Established: %w (last error: %v)", name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}
