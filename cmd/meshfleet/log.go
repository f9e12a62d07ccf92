package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

// logFlags is the one logging stack of every meshfleet component: log/slog.
// controller-runtime (logr) and client-go (klog) are routed into the same
// handler, so the operator's reconcilers, its libraries and the other
// components write one format.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "least severe level logged: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "json", "log line format: json or text")
}

// logger builds the components' logger on w and installs it as the logger of
// controller-runtime and klog.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(l.format) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", l.format)
	}
	log := slog.New(h)
	ctrl.SetLogger(logr.FromSlogHandler(h))
	klog.SetSlogLogger(log)
	return log, nil
}
