package operator

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// A second manager in the same process registers again: not an error.
	if err := RegisterMetrics(reg); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	// Another collector under the operator's metric name is a conflict.
	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshfleet_operator_api_writes_total", Help: "x"}, []string{"verb", "kind"}))
	if err := RegisterMetrics(other); err == nil {
		t.Fatal("registering over a different collector of the same name succeeded")
	}
}
