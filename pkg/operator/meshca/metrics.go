package meshca

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CertificateExpiry is when each certificate the operator keeps expires, as
// a Unix timestamp by cluster and certificate (root, intermediate,
// tunnel-agent); alert on
// `meshfleet_operator_certificate_expiry_timestamp_seconds - time()`. The
// operator registers it with its other metrics (operator.RegisterMetrics);
// this package only sets it.
var CertificateExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "meshfleet_operator_certificate_expiry_timestamp_seconds",
	Help: "When the certificates the operator keeps expire (Unix time), by cluster and certificate (root, intermediate, tunnel-agent for a tunnelled cluster's agent; tunnel-server with cluster empty).",
}, []string{"cluster", "certificate"})

// RecordExpiry publishes the expiry of a cluster's certificate.
func RecordExpiry(cluster, certificate string, notAfter time.Time) {
	CertificateExpiry.WithLabelValues(cluster, certificate).Set(float64(notAfter.Unix()))
}

// ForgetCluster removes a cluster's series, once it has left the mesh.
func ForgetCluster(cluster string) {
	CertificateExpiry.DeletePartialMatch(prometheus.Labels{"cluster": cluster})
}
