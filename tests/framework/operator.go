package framework

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/meshfleet/meshfleet/internal/localmesh"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/pkg/operator"
)

// OperatorLogTail is how many lines of the operator's log a failed test shows.
const OperatorLogTail = 60

// Operator is the operator's manager running in the test process.
type Operator struct {
	manager.Manager
	// LogPath is the operator's log file.
	LogPath string
	stop    func()
}

// Stop stops the operator and waits until it has stopped, as a crash or a
// rollout would; the test's cleanup does it otherwise. It may be called
// more than once.
func (o *Operator) Stop() { o.stop() }

// StartOperator builds the operator against cfg with opts and runs it until
// the test ends (localmesh.StartOperator). Its log goes to a file of its own
// (unless the caller set opts.Logger), whose last lines are shown if the
// test failed. An error of the manager fails the test.
func StartOperator(t testing.TB, cfg *rest.Config, opts operator.Options) *Operator {
	t.Helper()
	discardGlobalLog()
	path := filepath.Join(t.TempDir(), "operator.log")
	op, err := localmesh.StartOperator(cfg, opts, path)
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() {
		if err := op.Stop(); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() {
		stop()
		op.Close()
		operatorLogTail(t, op)
	})
	return &Operator{Manager: op.Manager(), LogPath: op.LogPath, stop: stop}
}

// operatorLogTail shows the end of op's log if the test failed.
func operatorLogTail(t testing.TB, op *localmesh.Operator) {
	if t.Failed() && op.LogPath != "" {
		t.Logf("last lines of the operator log %s:\n%s", op.LogPath, localproc.TailFile(op.LogPath, OperatorLogTail))
	}
}

// discardGlobalLog leaves controller-runtime's global logger to what logs
// outside the manager; unset, it prints a stack trace after 30 s.
var discardGlobalLog = sync.OnceFunc(func() { ctrllog.SetLogger(logr.Discard()) })
