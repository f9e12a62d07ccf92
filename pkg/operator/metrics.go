package operator

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
)

// RegisterMetrics registers the operator's own metrics with reg. New
// registers them with controller-runtime's registry, which the manager's
// metrics endpoint serves; nothing is registered when a package is merely
// imported. Registering again with the same registry is not an error:
// several managers in one process (tests, the sandbox) share the series.
func RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{APIWrites, MemberReady, meshca.CertificateExpiry} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) && are.ExistingCollector == c {
				continue
			}
			return fmt.Errorf("register the operator's metrics: %w", err)
		}
	}
	return nil
}
