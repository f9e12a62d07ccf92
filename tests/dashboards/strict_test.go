package dashboards

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	grafana "github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// TestDashboardsDecodeStrictly decodes every dashboard with the Grafana
// Foundation SDK's strict decoder (every field known, every required field
// present, panel options decoded by their panel type's own schema) and
// validates it, as Grafana's schema would.
func TestDashboardsDecodeStrictly(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	files, err := filepath.Glob(filepath.Join("..", "..", "manifests", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards found (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			//lint:ignore SA1019 the dashboards are Grafana's classic JSON model (schemaVersion 39), which dashboardv2 does not read
			var d grafana.Dashboard
			if err := noBuildErrors(d.UnmarshalJSONStrict(raw)); err != nil {
				t.Fatalf("strict decoding: %v", err)
			}
			if err := noBuildErrors(d.Validate()); err != nil {
				t.Fatalf("validation: %v", err)
			}
			if len(d.Panels) == 0 {
				t.Error("no panels")
			}
		})
	}
}

// noBuildErrors is err, or nil for the empty cog.BuildErrors the SDK returns
// as a non-nil error when it found nothing wrong.
func noBuildErrors(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}
