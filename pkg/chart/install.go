package chart

import (
	"context"
	"fmt"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Install installs the chart as release ReleaseName into namespace (created
// if missing) with the Helm SDK, as `helm install --create-namespace` does,
// against the cluster of kubeconfig. It waits for the CRDs to be
// established (Helm does before the templates), not for the operator's
// pods.
func Install(ctx context.Context, kubeconfig, namespace string, values map[string]any) error {
	c, err := Load()
	if err != nil {
		return err
	}
	cfg, err := actionConfig(kubeconfig, namespace)
	if err != nil {
		return err
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = ReleaseName, namespace, true
	in.WaitStrategy, in.Timeout = kube.HookOnlyStrategy, 2*time.Minute
	if _, err := in.RunWithContext(ctx, c, values); err != nil {
		return fmt.Errorf("helm install %s into %s: %w", ReleaseName, namespace, err)
	}
	return nil
}

// Upgrade upgrades release ReleaseName in namespace to this build's chart
// with values (the chart's defaults under them, as `helm upgrade` without
// --reuse-values). Helm leaves the CRDs of crds/ as they are on upgrade.
func Upgrade(ctx context.Context, kubeconfig, namespace string, values map[string]any) error {
	c, err := Load()
	if err != nil {
		return err
	}
	cfg, err := actionConfig(kubeconfig, namespace)
	if err != nil {
		return err
	}
	up := action.NewUpgrade(cfg)
	up.Namespace, up.WaitStrategy, up.Timeout = namespace, kube.HookOnlyStrategy, 2*time.Minute
	if _, err := up.RunWithContext(ctx, ReleaseName, c, values); err != nil {
		return fmt.Errorf("helm upgrade %s in %s: %w", ReleaseName, namespace, err)
	}
	return nil
}

// Uninstall removes release ReleaseName from namespace. The CRDs stay (Helm
// never deletes crds/), and with them every Istio and RemoteIstio, as
// `meshctl uninstall` without --purge.
func Uninstall(kubeconfig, namespace string) error {
	cfg, err := actionConfig(kubeconfig, namespace)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.WaitStrategy, un.Timeout = kube.HookOnlyStrategy, 2*time.Minute
	if _, err := un.Run(ReleaseName); err != nil {
		return fmt.Errorf("helm uninstall %s from %s: %w", ReleaseName, namespace, err)
	}
	return nil
}

// actionConfig is Helm's configuration for namespace of kubeconfig's
// cluster, releases stored in Secrets (Helm's default driver).
func actionConfig(kubeconfig, namespace string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &kubeconfig, &namespace
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, fmt.Errorf("helm configuration for %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
