// Command meshctl is meshfleet's command-line tool. Today it runs the local
// sandbox; install, cluster join, status and canary commands follow.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "meshctl",
		Short:         "Run and inspect a meshfleet multi-cluster Istio mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSandboxCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
