//go:build e2e

package e2e

import (
	"context"
	"testing"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/tests/framework"
)

// startIstiod starts istiod for the test (framework.StartIstiod): it is
// stopped when the test ends, and the end of its log is shown if the test
// failed. ctx is kept for the callers; the start is bounded by the test's
// context and the framework's start timeout.
func startIstiod(_ context.Context, t *testing.T, opts localistiod.Options) *localistiod.Istiod {
	t.Helper()
	return framework.StartIstiod(t, opts)
}
