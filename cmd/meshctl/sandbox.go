package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/pkg/sandbox"
)

func newSandboxCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "A local multi-cluster mesh on this machine, no containers",
	}
	cmd.AddCommand(newSandboxUpCommand())
	return cmd
}

func newSandboxUpCommand() *cobra.Command {
	var (
		dir     string
		remotes int
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start etcd, a primary and remote kube-apiservers and the operator; install the mesh; run until interrupted",
		Example: `  meshctl sandbox up                 # Ctrl-C stops everything
  meshctl sandbox up --remotes 1 --dir /tmp/mesh`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if dir == "" {
				home, _ := os.UserHomeDir()
				dir = filepath.Join(home, ".cache", "meshfleet", "sandbox")
			}
			// Each run starts from a clean state: etcd data from an earlier run
			// would hold objects signed with keys this run does not have.
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("clean %s: %w", dir, err)
			}
			out := cmd.OutOrStdout()
			sb, err := sandbox.Up(ctx, sandbox.Options{Dir: dir, Remotes: remotes, Progress: out})
			if err != nil {
				return err
			}
			defer sb.Down()
			fmt.Fprintf(out, "\nThe sandbox is up. Its clusters:\n")
			for _, c := range sb.Clusters {
				fmt.Fprintf(out, "  %-10s %s   kubectl --kubeconfig %s get nodes\n", c.Name, c.URL, c.Kubeconfig)
			}
			fmt.Fprintf(out, "\nThe mesh:              kubectl --kubeconfig %s -n istio-system get istio,remoteistio\n", sb.Primary().Kubeconfig)
			fmt.Fprintf(out, "                       meshctl --kubeconfig %s status\n", sb.Primary().Kubeconfig)
			if sb.Istiod != nil {
				fmt.Fprintf(out, "istiod:                xDS %s, debug http://%s/debug/configz\n", sb.Istiod.GRPCAddr, sb.Istiod.HTTPAddr)
			}
			if sb.XDSAddr != "" {
				fmt.Fprintf(out, "locality server:       %s (istiod configSources xds://%s)\n", sb.XDSAddr, sb.XDSAddr)
			}
			fmt.Fprintf(out, "Logs are under %s. Press Ctrl-C to stop everything.\n", dir)
			<-ctx.Done()
			fmt.Fprintln(out, "stopping the sandbox")
			return sb.Down()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the sandbox's data and logs (default ~/.cache/meshfleet/sandbox; wiped at start)")
	cmd.Flags().IntVar(&remotes, "remotes", 2, "number of remote clusters")
	return cmd
}
