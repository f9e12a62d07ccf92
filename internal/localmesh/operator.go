package localmesh

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/meshfleet/meshfleet/pkg/operator"
)

// Operator is the operator's manager running in this process. Stop ends
// it as a crash or a rollout would; Start builds a new manager and runs it,
// as a new pod would.
type Operator struct {
	// LogPath is the operator's log file ("" if the caller gave a Logger).
	LogPath string

	cfg  *rest.Config
	opts operator.Options
	log  *os.File
	proc inproc

	mu  sync.Mutex
	mgr manager.Manager
	err error
}

// StartOperator builds the operator against cfg with opts and runs it
// until Stop. An unset opts.Logger writes JSON to logPath.
func StartOperator(cfg *rest.Config, opts operator.Options, logPath string) (*Operator, error) {
	o := &Operator{cfg: cfg, opts: opts}
	if opts.Logger.GetSink() == nil {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("operator log: %w", err)
		}
		o.log, o.LogPath = f, logPath
		o.opts.Logger = logr.FromSlogHandler(slog.NewJSONHandler(f, nil))
	}
	if err := o.Start(context.Background()); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

// Start builds a new manager and runs it until Stop.
func (o *Operator) Start(context.Context) error {
	mgr, err := operator.New(o.cfg, o.opts)
	if err != nil {
		return fmt.Errorf("building the operator: %w", err)
	}
	o.mu.Lock()
	o.mgr = mgr
	o.mu.Unlock()
	o.proc.run(func(ctx context.Context) {
		if err := mgr.Start(ctx); err != nil {
			o.mu.Lock()
			if o.err == nil {
				o.err = fmt.Errorf("operator: %w", err)
			}
			o.mu.Unlock()
		}
	})
	return nil
}

// Manager is the running (or last) manager.
func (o *Operator) Manager() manager.Manager {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mgr
}

// Stop stops the manager and waits until it has returned; it does nothing
// if it is not running. It returns the first error a manager returned.
func (o *Operator) Stop() error {
	o.proc.stop()
	return o.Err()
}

// Err is the first error a manager returned.
func (o *Operator) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// Close stops the operator and closes its log file.
func (o *Operator) Close() {
	o.proc.stop()
	if o.log != nil {
		_ = o.log.Close()
	}
}
