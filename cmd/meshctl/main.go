// Command meshctl installs and runs a meshfleet multi-cluster Istio mesh:
// install, cluster join/leave/list, status, and a local sandbox.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Exit codes scripts can rely on.
const (
	exitFailure   = 1 // the command failed (a check, the install, a wait)
	exitUsage     = 2 // bad flags or arguments
	exitNotReady  = 3 // --wait ran out before the resources were Ready
	exitPreflight = 4 // pre-flight checks failed; nothing was written
)

// exitError carries an exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	// meshctl says what it does itself. controller-runtime's log (of the
	// clients meshctl uses) is not for its user, and left unset it prints a
	// stack trace on stderr after 30 s; the sandbox gives its operator a log
	// file of its own (operator.Options.Logger).
	ctrllog.SetLogger(logr.Discard())
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(exitFailure)
	}
}
