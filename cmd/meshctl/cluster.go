package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/kubeconfig"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/preflight"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/version"
)

func newClusterCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Join, remove and list the remote clusters of the mesh"}
	cmd.AddCommand(newJoinCommand(g), newLeaveCommand(g), newListCommand(g))
	return cmd
}

type joinOptions struct {
	remoteKubeconfig string
	remoteContext    string
	tunnel           bool
	print            bool
	agentImage       string
	tunnelServer     string
	network          string
	pilotAddress     string
	inject           []string
	wait             time.Duration
}

func newJoinCommand(g *globals) *cobra.Command {
	o := &joinOptions{}
	cmd := &cobra.Command{
		Use:   "join NAME",
		Short: "Join a remote cluster to the mesh",
		Long: `join checks the remote cluster, stores its kubeconfig in a Secret of the
primary, creates the RemoteIstio and waits until the cluster is Ready.

With --tunnel the remote is reached through the meshfleet tunnel instead and
no credential of it is stored: join creates the RemoteIstio, waits for the
operator to issue the agent's certificate for this cluster from the tunnel
CA (7 days, renewed by the operator through the tunnel), and applies the
agent (two replicas, with that certificate) in the remote with
--remote-kubeconfig, used once and not stored, then waits until the cluster
is Ready; with --print (air-gapped clusters) it prints the agent's manifest
instead, to apply there (kubectl --context REMOTE apply -f -). Once
connected, the operator keeps the agents at its own version, through the
tunnel. It reads no CA key; it needs only "get" on the Secret
meshfleet-system/meshfleet-tunnel-agent-NAME.`,
		Example: `  meshctl cluster join west --remote-kubeconfig ~/.kube/west.yaml --inject default
  meshctl cluster join private-dc --tunnel --tunnel-server tunnel.example.com:443 --remote-kubeconfig ~/.kube/private-dc.yaml
  meshctl cluster join air-gapped --tunnel --tunnel-server tunnel.example.com:443 --print > agent.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runJoin(cmd, g, o, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.remoteKubeconfig, "remote-kubeconfig", "", "kubeconfig of the remote cluster")
	f.StringVar(&o.remoteContext, "remote-context", "", "context of --remote-kubeconfig to use")
	f.BoolVar(&o.tunnel, "tunnel", false, "reach the remote through the tunnel; applies the agent with --remote-kubeconfig, else prints its manifest")
	f.BoolVar(&o.print, "print", false, "with --tunnel: print the agent manifest to apply in the remote yourself (the default without --remote-kubeconfig)")
	f.StringVar(&o.agentImage, "agent-image", version.Image(), "image of the tunnel agent (with --tunnel); the operator moves it to its own version once it connects")
	f.StringVar(&o.tunnelServer, "tunnel-server", "", "host:port where agents reach the tunnel server (with --tunnel)")
	f.StringVar(&o.network, "network", "", "the remote's network (default: per the mesh's mode)")
	f.StringVar(&o.pilotAddress, "pilot-address", "", "where the remote's proxies reach istiod (default: the primary's east-west gateway)")
	f.StringSliceVar(&o.inject, "inject", nil, "namespaces of the remote whose pods get sidecars")
	f.DurationVar(&o.wait, "wait", 5*time.Minute, "how long to wait for the cluster to be Ready (0: do not wait)")
	return cmd
}

func runJoin(cmd *cobra.Command, g *globals, o *joinOptions, name string) error {
	out := cmd.OutOrStdout()
	ctx := cmd.Context()
	switch {
	case o.print && !o.tunnel:
		return &exitError{exitUsage, fmt.Errorf("--print prints the tunnel agent's manifest: add --tunnel")}
	case !o.tunnel && o.remoteKubeconfig == "":
		return &exitError{exitUsage, fmt.Errorf("give either --remote-kubeconfig (direct) or --tunnel (through the tunnel: with --remote-kubeconfig to apply its agent there, or --print)")}
	case o.print && o.remoteKubeconfig != "":
		return &exitError{exitUsage, fmt.Errorf("--print writes the agent manifest for you to apply, --remote-kubeconfig applies it: give one of them")}
	}
	c, _, err := g.client()
	if err != nil {
		return err
	}
	ri := &v1beta1.RemoteIstio{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: "RemoteIstio"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.namespace},
		Spec: v1beta1.RemoteIstioSpec{
			Network: o.network, PilotAddress: o.pilotAddress, AutoInjectionNamespaces: o.inject,
		},
	}
	if o.tunnel {
		return joinTunnel(ctx, cmd, c, o, ri)
	}

	raw, err := minifiedKubeconfig(o.remoteKubeconfig, o.remoteContext)
	if err != nil {
		return &exitError{exitUsage, err}
	}
	// The operator refuses kubeconfigs that run plugins or read files: say so
	// before anything is written.
	if _, errs := kubeconfig.Inline(raw); len(errs) > 0 {
		return &exitError{exitUsage, fmt.Errorf("--remote-kubeconfig: the operator accepts only inline credentials, nothing was changed: %w", errs.ToAggregate())}
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("--remote-kubeconfig: %w", err)}
	}
	results, _ := preflight.Cluster(ctx, name, cfg, preflight.InstallAccess)
	preflight.Print(out, results)
	if preflight.Failed(results) {
		return &exitError{exitPreflight, fmt.Errorf("pre-flight checks of cluster %s failed; nothing was changed", name)}
	}
	secret := install.KubeconfigSecret(g.namespace, name+"-kubeconfig", raw)
	ri.Spec.KubeconfigSecretRef = &corev1.LocalObjectReference{Name: secret.Name}
	return createAndWait(ctx, cmd, c, o.wait, ri, secret)
}

func createAndWait(ctx context.Context, cmd *cobra.Command, c client.Client, wait time.Duration, ri *v1beta1.RemoteIstio, objs ...client.Object) error {
	out := cmd.OutOrStdout()
	for _, o := range append(objs, ri) {
		if err := c.Create(ctx, o); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return &exitError{exitFailure, fmt.Errorf("%s %s/%s already exists; `meshctl cluster leave %s` first to join again",
					o.GetObjectKind().GroupVersionKind().Kind, o.GetNamespace(), o.GetName(), ri.Name)}
			}
			return fmt.Errorf("create %s: %w", o.GetName(), err)
		}
	}
	fmt.Fprintf(out, "\n• RemoteIstio %s/%s created\n", ri.Namespace, ri.Name)
	if wait <= 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := install.Wait(wctx, c, ri, v1beta1.ConditionReady, out); err != nil {
		code := exitFailure
		if wctx.Err() != nil {
			code = exitNotReady
		}
		return &exitError{code, err}
	}
	fmt.Fprintf(out, "\nCluster %s joined the mesh.\n", ri.Name)
	return nil
}

// joinTunnel creates the RemoteIstio and prints the agent manifest with the
// certificate the operator issued for the cluster from the tunnel CA. It
// reads no CA key: only that cluster's agent Secret.
func joinTunnel(ctx context.Context, cmd *cobra.Command, c client.Client, o *joinOptions, ri *v1beta1.RemoteIstio) error {
	if o.tunnelServer == "" {
		return &exitError{exitUsage, fmt.Errorf("--tunnel needs --tunnel-server host:port, where the remote's agent reaches the tunnel server")}
	}
	// The RemoteIstio first: the operator issues the agent's certificate for it.
	if err := c.Create(ctx, ri); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create RemoteIstio %s/%s: %w", ri.Namespace, ri.Name, err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "# RemoteIstio %s/%s created; waiting for the operator to issue the agent's certificate.\n", ri.Namespace, ri.Name)
	wait := o.wait
	if wait <= 0 {
		wait = time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tlsData, err := agentCertificate(wctx, c, ri)
	if err != nil {
		code := exitFailure
		if wctx.Err() != nil {
			code = exitNotReady
		}
		return &exitError{code, err}
	}
	objs, err := install.TunnelAgent(ri.Name, o.tunnelServer, o.agentImage, tlsData)
	if err != nil {
		return err
	}
	if o.remoteKubeconfig == "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "# Apply this in cluster %s: it holds the agent's certificate for that cluster only (renewed by the operator through the tunnel).\n", ri.Name)
		if err := install.Print(cmd.OutOrStdout(), objs); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "# RemoteIstio %s/%s becomes Ready once the agent connects (meshctl cluster list).\n", ri.Namespace, ri.Name)
		return nil
	}
	rc, err := joinTargetClient(o)
	if err != nil {
		return err
	}
	if err := install.Apply(ctx, rc, objs); err != nil {
		return fmt.Errorf("applying the tunnel agent in cluster %s (with --remote-kubeconfig): %w; nothing of it is stored in the primary, run join again once fixed", ri.Name, err)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "• tunnel agent applied in cluster %s (%s/%s, image %s)\n", ri.Name, render.TunnelServerNamespace, render.TunnelAgentName, o.agentImage)
	if o.wait <= 0 {
		return nil
	}
	wctx2, cancel2 := context.WithTimeout(ctx, o.wait)
	defer cancel2()
	if err := install.Wait(wctx2, c, ri, v1beta1.ConditionReady, out); err != nil {
		code := exitFailure
		if wctx2.Err() != nil {
			code = exitNotReady
		}
		return &exitError{code, err}
	}
	fmt.Fprintf(out, "\nCluster %s joined the mesh through the tunnel.\n", ri.Name)
	return nil
}

// joinTargetClient is a client of the remote cluster with the admin's
// kubeconfig, used to apply the agent and never stored.
func joinTargetClient(o *joinOptions) (client.Client, error) {
	raw, err := minifiedKubeconfig(o.remoteKubeconfig, o.remoteContext)
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, &exitError{exitUsage, fmt.Errorf("--remote-kubeconfig: %w", err)}
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("client for --remote-kubeconfig: %w", err)
	}
	return c, nil
}

// agentCertificate waits for the operator to issue the agent certificate of
// ri's cluster and returns its Secret data.
func agentCertificate(ctx context.Context, c client.Client, ri *v1beta1.RemoteIstio) (map[string][]byte, error) {
	for {
		cur := &v1beta1.RemoteIstio{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(ri), cur); err != nil {
			return nil, fmt.Errorf("read RemoteIstio %s/%s: %w", ri.Namespace, ri.Name, err)
		}
		cluster := cur.Status.ClusterName
		if cluster == "" {
			cluster = cur.Name
		}
		key := client.ObjectKey{Namespace: meshca.Namespace, Name: meshca.AgentSecretName(cluster)}
		s := &corev1.Secret{}
		err := c.Get(ctx, key, s)
		switch {
		case err == nil && len(s.Data[corev1.TLSCertKey]) > 0:
			return map[string][]byte{corev1.TLSCertKey: s.Data[corev1.TLSCertKey], corev1.TLSPrivateKeyKey: s.Data[corev1.TLSPrivateKeyKey],
				meshca.TunnelCAKey: s.Data[meshca.TunnelCAKey]}, nil
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("you may not read Secret %s, the agent certificate the operator issued for cluster %s: %w; ask for `get` on that Secret (a Role with resourceNames: [%s] in namespace %s)",
				key, cluster, err, key.Name, key.Namespace)
		case err != nil && !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("read Secret %s: %w", key, err)
		}
		if cur.Status.Phase == v1beta1.PhaseFailed {
			return nil, fmt.Errorf("RemoteIstio %s/%s failed before its agent certificate was issued: %s", ri.Namespace, ri.Name, firstProblem(cur.Status.Conditions))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the operator has not issued the agent certificate of cluster %s (Secret %s) yet: %s; is the operator running with the tunnel (--tunnel-url)?",
				cluster, key, firstProblem(cur.Status.Conditions))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// minifiedKubeconfig keeps only the chosen context, with credentials inlined,
// so the Secret is self-contained.
func minifiedKubeconfig(path, context string) ([]byte, error) {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("--remote-kubeconfig: %w", err)
	}
	if context != "" {
		if _, ok := kc.Contexts[context]; !ok {
			return nil, fmt.Errorf("--remote-context %q is not in %s", context, path)
		}
		kc.CurrentContext = context
	}
	if err := clientcmdapi.MinifyConfig(kc); err != nil {
		return nil, fmt.Errorf("--remote-kubeconfig: %w", err)
	}
	if err := clientcmdapi.FlattenConfig(kc); err != nil {
		return nil, fmt.Errorf("--remote-kubeconfig: %w", err)
	}
	return clientcmd.Write(*kc)
}

func newLeaveCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "leave NAME",
		Short: "Remove a remote cluster from the mesh (and what meshfleet installed in it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: args[0], Namespace: g.namespace}}
			existed := false
			if force {
				patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+remoteistio.AnnotationAbandon+`":"true"}}}`))
				err := c.Patch(cmd.Context(), ri, patch)
				if client.IgnoreNotFound(err) != nil {
					return err
				}
				existed = err == nil
			}
			if err := c.Delete(cmd.Context(), ri); err != nil {
				if apierrors.IsNotFound(err) && !existed {
					return &exitError{exitFailure, fmt.Errorf("no cluster %s in the mesh (RemoteIstio %s/%s not found); see meshctl cluster list", args[0], g.namespace, args[0])}
				}
				if !apierrors.IsNotFound(err) {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for {
				err := c.Get(ctx, client.ObjectKeyFromObject(ri), ri)
				if apierrors.IsNotFound(err) {
					break
				}
				if ctx.Err() != nil {
					return &exitError{exitNotReady, fmt.Errorf("cluster %s is still being cleaned up: %s (leave --force stops waiting for an unreachable cluster and leaves its objects behind)", args[0], firstProblem(ri.Status.Conditions))}
				}
				time.Sleep(300 * time.Millisecond)
			}
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: args[0] + "-kubeconfig", Namespace: g.namespace}}
			_ = client.IgnoreNotFound(c.Delete(cmd.Context(), secret))
			fmt.Fprintf(cmd.OutOrStdout(), "Cluster %s left the mesh.\n", args[0])
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the clean-up")
	cmd.Flags().BoolVar(&force, "force", false, "remove the cluster even if it cannot be reached, leaving meshfleet's objects in it")
	return cmd
}

func firstProblem(conds []metav1.Condition) string {
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue {
			return fmt.Sprintf("%s: %s", c.Type, c.Message)
		}
	}
	return "waiting for the operator"
}
