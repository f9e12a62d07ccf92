package operator

import (
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/version"
)

// TestOptionsValidate: certificate lifetimes below MinCertTTL and a tunnel
// server without the names of its certificate are refused, with the fix.
func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{}, ""},
		{Options{AgentCertTTL: time.Minute, ServerCertTTL: time.Hour}, ""},
		{Options{AgentCertTTL: 30 * time.Second}, "agent certificate lifetime 30s is shorter than 1m0s"},
		{Options{ServerCertTTL: time.Second}, "tunnel server certificate lifetime 1s"},
		{Options{TunnelServer: &render.TunnelServer{}}, "TunnelServerHosts"},
		{Options{TunnelServer: &render.TunnelServer{}, TunnelServerHosts: []string{"meshfleet-tunnel.meshfleet-system.svc"}}, ""},
	} {
		err := tt.opts.validate()
		if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.opts, err, tt.want)
		}
	}
	if (Options{}).image() != version.Image() || (Options{Image: "x"}).image() != "x" {
		t.Error("image(): want Image, else render's default")
	}
}
