// Command meshfleet runs meshfleet's control-plane components. Each is a
// subcommand: operator (reconciles Istio and RemoteIstio resources).
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
