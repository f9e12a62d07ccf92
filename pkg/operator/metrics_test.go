//go:build integration

package operator_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshfleet/meshfleet/tests/framework"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// eventually polls f for up to a minute (testenv.Eventually), then fails the
// test with f's last error.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, what, f)
}

// formatConditions prints conditions on one line, for failure messages.
func formatConditions(cs []metav1.Condition) string { return framework.FormatConditions(cs) }

// gatherSum adds up every sample of a metric family in controller-runtime's
// registry whose labels include want.
func gatherSum(name string, want map[string]string) float64 {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}
