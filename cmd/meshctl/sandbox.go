package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/internal/netns"
	"github.com/meshfleet/meshfleet/internal/sandbox"
	"github.com/meshfleet/meshfleet/pkg/check"
)

func defaultSandboxDir() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "meshfleet", "sandbox")
}

func newSandboxCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "A local multi-cluster mesh on this machine, no containers",
		Long: `The sandbox runs, in a network namespace of its own: etcd, a primary and
remote kube-apiservers, the operator (which installs the control plane and
joins the remotes), the locality server, a real istiod, and a demo app: gRPC
servers in three zones of two regions and proxyless gRPC clients calling them
through istiod. fail-zone takes a zone's endpoints down to show failover;
restore brings them back. kill and restart end and start one component
(locality, tunnel-server, agent/CLUSTER, istiod, apiserver/CLUSTER,
etcd/CLUSTER, operator) while the traffic line shows whether calls hold.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", defaultSandboxDir(), "the sandbox's directory (data, kubeconfigs, logs, control socket)")
	cmd.AddCommand(newSandboxUpCommand(&dir), newSandboxStatusCommand(&dir), newSandboxZoneCommand(&dir, true), newSandboxZoneCommand(&dir, false),
		newSandboxFaultCommand(&dir, true), newSandboxFaultCommand(&dir, false), newSandboxDownCommand(&dir))
	return cmd
}

func newSandboxUpCommand(dir *string) *cobra.Command {
	var (
		remotes int
		watch   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox and run until interrupted (Ctrl-C or meshctl sandbox down)",
		Example: `  meshctl sandbox up
  meshctl sandbox up --remotes 1 --dir /tmp/mesh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if !netns.Inside() {
				// Each run starts clean: data from an earlier run holds objects
				// signed with keys this run does not have.
				if err := os.RemoveAll(*dir); err != nil {
					return fmt.Errorf("clean %s: %w", *dir, err)
				}
			}
			// Re-run in a network namespace of its own, where the demo's
			// servers may listen on 198.18.0.0/15 addresses.
			var runErr error
			code := netns.Main(func() int {
				runErr = runSandbox(cmd.Context(), out, *dir, remotes, watch)
				if runErr != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "Error:", runErr)
					return exitFailure
				}
				return 0
			}, sandbox.Addrs()...)
			if code != 0 {
				return &exitError{code, fmt.Errorf("the sandbox stopped with status %d (logs in %s)", code, *dir)}
			}
			return runErr
		},
	}
	cmd.Flags().IntVar(&remotes, "remotes", 2, "number of remote clusters")
	cmd.Flags().DurationVar(&watch, "watch", 5*time.Second, "how often to print where the demo's traffic goes (0: never)")
	return cmd
}

// runSandbox runs inside the sandbox's network namespace.
func runSandbox(parent context.Context, out io.Writer, dir string, remotes int, watch time.Duration) error {
	ctx, stopSignals := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	start := time.Now()
	sb, err := sandbox.Up(ctx, sandbox.Options{Dir: dir, Remotes: remotes, Progress: out})
	if err != nil {
		return err
	}
	defer sb.Down()
	down := make(chan struct{})
	go func() { _ = sb.Serve(ctx, down) }()

	st := sb.Status()
	fmt.Fprintf(out, "\nThe sandbox is up (%v). Its clusters:\n", time.Since(start).Round(time.Second))
	for _, c := range st.Clusters {
		fmt.Fprintf(out, "  %-10s %s   kubeconfig %s\n", c.Name, c.URL, c.Kubeconfig)
	}
	fmt.Fprintf(out, "\nIt runs in a network namespace of its own; reach its API servers with\n")
	fmt.Fprintf(out, "  nsenter --net=/proc/%d/ns/net kubectl --kubeconfig %s get istio,remoteistio -n istio-system\n", st.PID, st.Clusters[0].Kubeconfig)
	fmt.Fprintf(out, "istiod:           %s (log %s)\n", st.Istiod, filepath.Join(dir, "istiod", "istiod.log"))
	fmt.Fprintf(out, "locality server:  rules in the primary's API (kubectl get dr -n istio-system); debug %s\n", dash(st.Endpoints.LocalityDebug))
	fmt.Fprintf(out, "istiod debug:     %s   tunnel metrics: %s\n", dash(st.Endpoints.IstiodDebug), dash(st.Endpoints.TunnelMetrics))
	fmt.Fprintf(out, "These addresses are in the primary's kubeconfig (extension %s), so in the sandbox's network namespace\n", check.EndpointsExtension)
	fmt.Fprintf(out, "  meshctl --kubeconfig %s check | status | locality\n", st.Clusters[0].Kubeconfig)
	fmt.Fprintf(out, "work without flags (nsenter --net=/proc/%d/ns/net in front, as for kubectl).\n", st.PID)
	fmt.Fprintf(out, "Try:              meshctl sandbox fail-zone eu-west-a; meshctl sandbox restore eu-west-a; meshctl sandbox status\n")
	fmt.Fprintf(out, "                  meshctl sandbox kill istiod; meshctl sandbox restart istiod (components: meshctl sandbox status)\n")
	fmt.Fprintf(out, "Logs are under %s. Press Ctrl-C or run meshctl sandbox down to stop everything.\n\n", dir)

	var tick <-chan time.Time
	if watch > 0 {
		t := time.NewTicker(watch)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "stopping the sandbox")
			return sb.Down()
		case <-down:
			fmt.Fprintln(out, "stopping the sandbox")
			return sb.Down()
		case <-tick:
			fmt.Fprintln(out, trafficLine(sb.Status().Traffic))
		}
	}
}

// trafficLine is one line of the live view: per client, where its calls went.
func trafficLine(ts []sandbox.Traffic) string {
	var parts []string
	for _, t := range ts {
		zones := make([]string, 0, len(t.ByZone))
		for z := range t.ByZone {
			zones = append(zones, z)
		}
		sort.Strings(zones)
		var to []string
		for _, z := range zones {
			to = append(to, fmt.Sprintf("%s %.0f%%", z, t.ByZone[z]))
		}
		if t.Errors > 0 {
			to = append(to, fmt.Sprintf("errors %d", t.Errors))
		}
		parts = append(parts, fmt.Sprintf("client in %s → %s", t.Client, strings.Join(to, ", ")))
	}
	return time.Now().Format("15:04:05") + "  " + strings.Join(parts, " | ")
}

func newSandboxStatusCommand(dir *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running sandbox: clusters, zones and where the demo's traffic goes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := sandbox.Connect(*dir).Status()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLUSTER\tURL\tKUBECONFIG")
			for _, c := range st.Clusters {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.URL, c.Kubeconfig)
			}
			fmt.Fprintln(tw, "\nCOMPONENT\tRUNNING\tDETAIL")
			for _, c := range st.Components {
				fmt.Fprintf(tw, "%s\t%v\t%s\n", c.Name, c.Running, c.Detail)
			}
			fmt.Fprintln(tw, "\nZONE\tREGION\tCLUSTER\tSERVER\tREADY")
			for _, z := range st.Zones {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", z.Zone, z.Region, z.Cluster, z.Addr, z.Ready)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out, "\n"+trafficLine(st.Traffic))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newSandboxZoneCommand(dir *string, fail bool) *cobra.Command {
	use, short := "restore ZONE|REGION", "Bring a zone's (or region's) endpoints back"
	if fail {
		use, short = "fail-zone ZONE|REGION", "Take a zone's (or a whole region's) endpoints down, to watch failover"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := sandbox.Connect(*dir)
			if fail {
				return c.FailZone(args[0])
			}
			return c.Restore(args[0])
		},
	}
}

func newSandboxFaultCommand(dir *string, kill bool) *cobra.Command {
	use, short := "restart COMPONENT", "Start a killed component again (or kill and start a running one)"
	if kill {
		use, short = "kill COMPONENT", "Kill one component as a crash would, to watch the traffic hold"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

COMPONENT is a name from meshctl sandbox status, or one that stands for a
group: tunnel-server (the active server; its standby takes the Lease),
agent/CLUSTER (one of that cluster's agents), apiserver/CLUSTER,
etcd/CLUSTER, locality, istiod, operator.`,
		Example: `  meshctl sandbox kill tunnel-server
  meshctl sandbox restart tunnel-server
  meshctl sandbox kill apiserver/remote-1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := sandbox.Connect(*dir)
			if kill {
				name, err := c.Kill(args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "killed %s\n", name)
				return nil
			}
			names, err := c.Restart(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restarted %s\n", strings.Join(names, ", "))
			return nil
		},
	}
}

func newSandboxDownCommand(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the running sandbox and every process it started",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sandbox.Connect(*dir).Down(2 * time.Minute); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "The sandbox is down.")
			return nil
		},
	}
}
