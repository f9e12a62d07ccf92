package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
)

func newRenderCommand() *cobra.Command {
	var (
		file     string
		withCRDs bool
		showPlan bool
	)
	cmd := &cobra.Command{
		Use:   "render -f ISTIO.yaml",
		Short: "Print the objects the operator would apply for an Istio resource, offline",
		Long: `render runs the operator's pipeline (validate and default, then render
Istio's charts) on a file, without a cluster. Invalid specs are reported
with the field and the fix, exactly as the operator would report them.`,
		Example: `  meshfleet render -f samples/istio.yaml
  meshfleet render -f samples/istio.yaml --plan    # the resolved ControlPlane only
  meshfleet render -f samples/istio.yaml --crds | kubectl apply --server-side -f -`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := readInput(file)
			if err != nil {
				return err
			}
			ist := &v1beta1.Istio{}
			if err := yaml.UnmarshalStrict(in, ist); err != nil {
				return fmt.Errorf("%s: not an Istio resource: %w", file, err)
			}
			if ist.Kind != "Istio" {
				return fmt.Errorf("%s: kind is %q; render takes a meshfleet.io/v1beta1 Istio resource", file, ist.Kind)
			}
			if ist.Namespace == "" {
				ist.Namespace = "istio-system"
			}
			cp, errs := render.FromIstio(ist)
			if len(errs) > 0 {
				for _, e := range errs {
					fmt.Fprintf(cmd.ErrOrStderr(), "Istio %s/%s: %s\n", ist.Namespace, ist.Name, e.Error())
				}
				return fmt.Errorf("%d invalid field(s); fix them and run again", len(errs))
			}
			out := cmd.OutOrStdout()
			if showPlan {
				return printYAML(out, cp)
			}
			m, err := render.Render(cp)
			if err != nil {
				return err
			}
			var objs []*unstructured.Unstructured
			if withCRDs {
				objs = append(objs, m.CRDs...)
			}
			for _, o := range append(objs, m.Objects...) {
				fmt.Fprintln(out, "---")
				if err := printYAML(out, o.Object); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file holding an Istio resource (- for standard input)")
	cmd.Flags().BoolVar(&withCRDs, "crds", false, "include Istio's CRDs")
	cmd.Flags().BoolVar(&showPlan, "plan", false, "print the resolved ControlPlane instead of the objects")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func readInput(file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return b, nil
}

func printYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
