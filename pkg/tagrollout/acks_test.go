package tagrollout

import (
	"strings"
	"testing"
	"time"
)

// syncz is istiod's /debug/syncz answer as pilot-discovery writes it: a
// proxyless gRPC client of west that ACKed everything, a sidecar of west
// still behind on clusters, one of east whose listener NACK is its latest
// answer, and one of a cluster outside the batch.
const syncz = `[
 {"cluster_id":"west","proxy":"grpc-client-0.apps","proxy_type":"sidecar","istio_version":"1.30.3",
  "resources":{"type.googleapis.com/envoy.config.listener.v3.Listener":{"sent":"n1","acked":"n1","sentTime":"2026-12-02T04:00:00Z"},
               "type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"n2","acked":"n2"}}},
 {"cluster_id":"west","proxy":"sidecar~10.0.0.2~b.apps~apps.svc.cluster.local",
  "resources":{"type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"n4","acked":"n3"}}},
 {"cluster_id":"east","proxy":"grpc-client-1.apps",
  "resources":{"type.googleapis.com/envoy.config.listener.v3.Listener":{"sent":"n6","acked":"n5","lastError":"listener \"x\": unsupported filter"},
               "type.googleapis.com/envoy.config.route.v3.RouteConfiguration":{"sent":"n7","acked":"n7"}}},
 {"cluster_id":"north","proxy":"grpc-client-2.apps",
  "resources":{"type.googleapis.com/envoy.config.listener.v3.Listener":{"sent":"n8","acked":"n8"}}}
]`

func TestObserveAcks(t *testing.T) {
	proxies, err := ParseSyncz([]byte(syncz))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		clusters []string
		want     Acks
	}{
		"west: one ACKed, one behind": {[]string{"west"}, Acks{Proxies: 2, Acked: 1}},
		"east: the NACK named": {[]string{"east"}, Acks{Proxies: 1, Nacked: 1,
			Nack: `proxy grpc-client-1.apps (cluster east) NACKed Listener: listener "x": unsupported filter`}},
		"a cluster with no proxy": {[]string{"south"}, Acks{}},
		"every cluster":           {nil, Acks{Proxies: 4, Acked: 2, Nacked: 1, Nack: `proxy grpc-client-1.apps (cluster east) NACKed Listener: listener "x": unsupported filter`}},
	} {
		if got := ObserveAcks(proxies, c.clusters); got != c.want {
			t.Errorf("%s: %+v, want %+v", name, got, c.want)
		}
	}
	if _, err := ParseSyncz([]byte("<html>401</html>")); err == nil || !strings.Contains(err.Error(), "/debug/syncz") {
		t.Errorf("error %v", err)
	}
}

// TestNackFailsTheBatchWithTheProxy: a NACK fails the batch at once, its
// reason naming the proxy and its error.
func TestNackFailsTheBatchWithTheProxy(t *testing.T) {
	r := fleet()
	run(t, r, []step{
		{0, Observation{}, MoveTag, 0, "1-31-0", "canary"},
		{time.Second, Observation{IstiodReady: true, Proxies: 2, Acked: 1, Nacked: 1, ProxiesExpected: 2,
			Nack: "proxy grpc-client-1.apps (cluster west) NACKed Listener: bad"}, MoveTag, 0, "1-30-3",
			"1 of 2 proxies NACKed the config of istiod-1-31-0: proxy grpc-client-1.apps (cluster west) NACKed Listener: bad"},
	})
}
