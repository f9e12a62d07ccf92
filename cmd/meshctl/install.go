package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/preflight"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/version"
)

type installOptions struct {
	file          string
	version       string
	hub           string
	clusterName   string
	network       string
	mode          string
	locality      bool
	dryRun        bool
	skipOperator  bool
	operatorImage string
	wait          time.Duration
}

func newInstallCommand(g *globals) *cobra.Command {
	o := &installOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Check the cluster, then install meshfleet's CRDs, the operator and a control plane",
		Example: `  # a control plane for a multi-cluster mesh on a flat network
  meshctl install --version 1.30.3 --cluster-name east --mode flatNetwork --locality

  # from an Istio resource you wrote
  meshctl install -f samples/istio.yaml

  # print what would be applied
  meshctl install --version 1.30.3 --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInstall(cmd, g, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "an Istio resource to install (flags below are ignored)")
	f.StringVar(&o.version, "version", "1.30.3", "Istio release")
	f.StringVar(&o.hub, "hub", "", "image registry and repository (default docker.io/istio)")
	f.StringVar(&o.clusterName, "cluster-name", "", "this cluster's name in the mesh (default: the resource name)")
	f.StringVar(&o.network, "network", "", "this cluster's network")
	f.StringVar(&o.mode, "mode", "none", "multi-cluster mode: none, flatNetwork or gatewayConnected")
	f.BoolVar(&o.locality, "locality", true, "locality-aware routing and failover")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the manifests instead of applying them")
	f.BoolVar(&o.skipOperator, "skip-operator", false, "do not install the operator (it runs elsewhere)")
	f.StringVar(&o.operatorImage, "operator-image", version.Image(), "image of the operator (default: this meshctl's build)")
	f.DurationVar(&o.wait, "wait", 5*time.Minute, "how long to wait for the control plane to be Ready (0: do not wait)")
	return cmd
}

// istioFrom builds the Istio resource from -f or the flags.
func (o *installOptions) istioFrom(namespace string) (*v1beta1.Istio, error) {
	ist := &v1beta1.Istio{}
	if o.file != "" {
		b, err := os.ReadFile(o.file)
		if err != nil {
			return nil, &exitError{exitUsage, fmt.Errorf("-f: %w", err)}
		}
		if err := yaml.UnmarshalStrict(b, ist); err != nil {
			return nil, &exitError{exitUsage, fmt.Errorf("%s is not an Istio resource: %w", o.file, err)}
		}
		if ist.Namespace == "" {
			ist.Namespace = namespace
		}
	} else {
		ist.ObjectMeta = metav1.ObjectMeta{Name: "istio", Namespace: namespace}
		ist.Spec = v1beta1.IstioSpec{
			Version: o.version, Hub: o.hub, ClusterName: o.clusterName, Network: o.network,
			MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterMode(o.mode)},
			LocalityLB:   v1beta1.LocalityLBSpec{Enabled: o.locality},
			Gateways:     v1beta1.GatewaysSpec{Enabled: true},
		}
	}
	ist.TypeMeta = metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: "Istio"}
	if _, errs := render.FromIstio(ist); len(errs) > 0 {
		return nil, &exitError{exitUsage, fmt.Errorf("invalid Istio resource %s/%s: %v", ist.Namespace, ist.Name, errs.ToAggregate())}
	}
	return ist, nil
}

func runInstall(cmd *cobra.Command, g *globals, o *installOptions) error {
	out := cmd.OutOrStdout()
	ist, err := o.istioFrom(g.namespace)
	if err != nil {
		return err
	}
	objs, err := install.CRDs()
	if err != nil {
		return err
	}
	if !o.skipOperator {
		ops, err := install.Operator(o.operatorImage)
		if err != nil {
			return err
		}
		objs = append(objs, ops...)
	}
	istObj, err := install.ToUnstructured(ist, ist.TypeMeta)
	if err != nil {
		return err
	}
	objs = append(objs, install.Namespace(ist.Namespace), istObj)
	if o.dryRun {
		return install.Print(out, objs)
	}

	c, cfg, err := g.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	results, kube := preflight.Cluster(ctx, "primary", cfg, preflight.InstallAccess)
	if kube != nil {
		results = append(results, preflight.NoForeignIstio(ctx, "primary", kube, ist.Namespace))
	}
	preflight.Print(out, results)
	if preflight.Failed(results) {
		return &exitError{exitPreflight, fmt.Errorf("pre-flight checks failed; nothing was installed")}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "• applying %d objects (CRDs, operator, Istio %s/%s)\n", len(objs), ist.Namespace, ist.Name)
	if err := install.Apply(ctx, c, objs); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if o.wait <= 0 {
		return nil
	}
	fmt.Fprintf(out, "• waiting up to %v for the control plane to be Ready\n", o.wait)
	wctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	if err := install.Wait(wctx, c, ist, v1beta1.ConditionReady, out); err != nil {
		code := exitFailure
		if wctx.Err() != nil {
			code = exitNotReady
		}
		return &exitError{code, err}
	}
	fmt.Fprintf(out, "\nThe control plane is Ready. Join clusters with: meshctl cluster join NAME --remote-kubeconfig FILE\n")
	return nil
}

func newUninstallCommand(g *globals) *cobra.Command {
	var purge bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the mesh: remote clusters, the control plane, the operator",
		Long: `uninstall deletes the RemoteIstio and Istio resources and waits until the
operator has removed what they installed, then removes the operator. Istio's
CRDs (and your Istio config) and the mesh's root CA Secret are kept; --purge
also removes meshfleet's CRDs and the operator's namespace.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return install.Uninstall(ctx, c, g.namespace, purge, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove meshfleet's CRDs and the operator's namespace")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the operator to clean up")
	return cmd
}
