//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/pkg/localistiod"
	"github.com/meshfleet/meshfleet/pkg/localproc"
)

// startIstiod starts istiod for the test: it is stopped when the test ends,
// and the end of its log is shown if the test failed.
func startIstiod(ctx context.Context, t *testing.T, opts localistiod.Options) *localistiod.Istiod {
	t.Helper()
	start := time.Now()
	d, err := localistiod.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("istiod ready in %v, xDS on %s, log %s", time.Since(start).Round(time.Millisecond), d.GRPCAddr, d.LogPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", d.LogPath, localproc.TailFile(d.LogPath, 80))
		}
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	return d
}
