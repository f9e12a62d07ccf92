package framework

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

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
// the test ends. Its log goes to a file of its own (opts.Logger, unless the
// caller set one), whose last lines are shown if the test failed. An error
// of the manager fails the test.
func StartOperator(t testing.TB, cfg *rest.Config, opts operator.Options) *Operator {
	t.Helper()
	path := filepath.Join(t.TempDir(), "operator.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.FromSlogHandler(slog.NewTextHandler(f, nil))
	}
	// controller-runtime's global logger is left to what logs outside the
	// manager; unset, it prints a stack trace after 30 s.
	discardGlobalLog()
	mgr, err := operator.New(cfg, opts)
	if err != nil {
		f.Close()
		t.Fatalf("building the operator: %v", err)
	}
	// Its own context: t.Context() is cancelled before cleanups run, and
	// the operator must stop here, after the test's own cleanups.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator: %v", err)
		}
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("last lines of the operator log %s:\n%s", path, localproc.TailFile(path, OperatorLogTail))
		}
		f.Close()
	})
	return &Operator{Manager: mgr, LogPath: path, stop: stop}
}

var discardGlobalLog = sync.OnceFunc(func() { ctrllog.SetLogger(logr.Discard()) })
