package podrun

import "testing"

func TestRewriter(t *testing.T) {
	rw := rewriter(map[string]string{
		"/etc/meshfleet/tunnel":    "/tmp/r/volumes/tls",
		"/etc/meshfleet/tunnel-ca": "/tmp/r/volumes/ca",
		ServiceAccountDir:          "/tmp/r/volumes/sa",
	})
	for in, want := range map[string]string{
		"--tls-cert-file=/etc/meshfleet/tunnel/tls.crt":           "--tls-cert-file=/tmp/r/volumes/tls/tls.crt",
		"--tunnel-ca-file=/etc/meshfleet/tunnel-ca/ca.crt":        "--tunnel-ca-file=/tmp/r/volumes/ca/ca.crt",
		"/etc/meshfleet/tunnel":                                   "/tmp/r/volumes/tls",
		"/var/run/secrets/kubernetes.io/serviceaccount/token":     "/tmp/r/volumes/sa/token",
		"--files=/etc/meshfleet/tunnel/a,/etc/meshfleet/tunnel/b": "--files=/tmp/r/volumes/tls/a,/tmp/r/volumes/tls/b",
		// Not a mount: a longer name, or the path inside another one.
		"--x=/etc/meshfleet/tunnelx":      "--x=/etc/meshfleet/tunnelx",
		"--x=/opt/etc/meshfleet/tunnel/a": "--x=/opt/etc/meshfleet/tunnel/a",
		"--namespace=istio-system":        "--namespace=istio-system",
	} {
		if got := rw(in); got != want {
			t.Errorf("rewrite(%q) = %q, want %q", in, got, want)
		}
	}
}
