package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ingress"
	"github.com/meshfleet/meshfleet/pkg/operator/meshingress"
	"github.com/meshfleet/meshfleet/pkg/render"
)

func newIngressCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ingress",
		Short: "Show and shift the mesh-wide ingress (MeshIngress): routes, per-cluster weights, header pins, fallback",
		Long: `ingress reads MeshIngress resources (-n, default istio-system): which hosts
enter through which clusters' ingress gateways, and per route how traffic
divides over the clusters, which headers pin a cluster and where a cluster's
share falls back when its endpoints are not ready. "weights" changes a route's
split; the operator renders it into the VirtualService istiod serves the
gateways.`,
	}
	cmd.AddCommand(newIngressShowCommand(g), newIngressWeightsCommand(g))
	return cmd
}

func ingressNamespace(cmd *cobra.Command, g *globals) string {
	if cmd.Flags().Changed("namespace") && g.namespace != "" {
		return g.namespace
	}
	return "istio-system"
}

func newIngressShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show [NAME]",
		Short: "Print each MeshIngress's routes, weights and header pins, and whether the operator applied them",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			ic, err := istioclient.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("istio client for %s: %w", cfg.Host, err)
			}
			ns := ingressNamespace(cmd, g)
			list := &v1beta1.MeshIngressList{}
			if err := c.List(cmd.Context(), list, client.InNamespace(ns)); err != nil {
				return fmt.Errorf("listing MeshIngress resources in %s: %w", ns, err)
			}
			found := false
			for i := range list.Items {
				mi := &list.Items[i]
				if len(args) == 1 && mi.Name != args[0] {
					continue
				}
				found = true
				fmt.Fprint(cmd.OutOrStdout(), ingress.Describe(mi))
				fmt.Fprintf(cmd.OutOrStdout(), "  applied: %s\n", appliedLine(mi))
				vs, err := ic.NetworkingV1().VirtualServices(render.GatewayNamespace).Get(cmd.Context(), ingress.VirtualServiceName(mi.Name), metav1.GetOptions{})
				if err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "  served: cannot read VirtualService %s/%s: %v\n", render.GatewayNamespace, ingress.VirtualServiceName(mi.Name), err)
					continue
				}
				fmt.Fprint(cmd.OutOrStdout(), ingress.Served(vs))
			}
			if !found {
				return fmt.Errorf("no MeshIngress %s in namespace %s", strings.Join(args, ""), ns)
			}
			return nil
		},
	}
}

func appliedLine(mi *v1beta1.MeshIngress) string {
	c := meta.FindStatusCondition(mi.Status.Conditions, meshingress.ConditionReady)
	switch {
	case c == nil:
		return "not yet (is the operator running?)"
	case c.ObservedGeneration != mi.Generation:
		return "not yet for the latest change (" + c.Message + ")"
	case c.Status == "True":
		return "yes, " + c.Message
	}
	return "no: " + c.Message
}

func newIngressWeightsCommand(g *globals) *cobra.Command {
	var route string
	cmd := &cobra.Command{
		Use:   "weights NAME CLUSTER=PERCENT[,CLUSTER=PERCENT...]",
		Short: "Set a route's per-cluster weights (they must add up to 100)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := ingress.ParseWeights(args[1])
			if err != nil {
				return err
			}
			c, _, err := g.client()
			if err != nil {
				return err
			}
			mi, err := shiftWeights(cmd.Context(), c, client.ObjectKey{Namespace: ingressNamespace(cmd, g), Name: args[0]}, route, w)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), ingress.Describe(mi))
			return nil
		},
	}
	cmd.Flags().StringVar(&route, "route", "", "route to change (may be left out when the MeshIngress has one route)")
	return cmd
}

// shiftWeights writes new weights into one route, retrying on conflicts.
func shiftWeights(ctx context.Context, c client.Client, key client.ObjectKey, route string, w []v1beta1.ClusterWeight) (*v1beta1.MeshIngress, error) {
	var out *v1beta1.MeshIngress
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mi := &v1beta1.MeshIngress{}
		if err := c.Get(ctx, key, mi); err != nil {
			return fmt.Errorf("reading MeshIngress %s: %w", key, err)
		}
		next, err := ingress.SetWeights(mi, route, w)
		if err != nil {
			return err
		}
		if err := c.Update(ctx, next); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}
