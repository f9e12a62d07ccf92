//go:build e2e

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// ackClient is a real grpc-go proxyless xDS client (one ADS stream of its
// own) subscribed, through istiod, to one Service's listener, route,
// cluster and endpoints: what a workload calling that Service would hold.
// Its endpoints are unreachable addresses; it is never called, only kept
// connected so that istiod pushes to it and it ACKs.
type ackClient struct {
	// proxy is istiod's proxy ID for it ("ack-<name>-<namespace>.default"): the
	// "for node:" of istiod's push lines and the prefix of the connection
	// ID in its ACK lines.
	proxy string
	cc    *grpc.ClientConn
}

// startAckClient connects a client in r1/z1 to istiod at addr for service
// ("<name>.<namespace>", port foPort) and waits until istiod logged its ACK
// of the Service's endpoints.
func startAckClient(addr, service string, ilog *istiodLog) (*ackClient, error) {
	proxy := "ack-" + strings.ReplaceAll(service, ".", "-") + ".default"
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": addr, "channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []any{"xds_v3"}}},
		"node": map[string]any{
			"id":       "sidecar~198.18.0.20~" + proxy + "~default.svc.cluster.local",
			"metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": "default", "CLUSTER_ID": "c1", "ISTIO_VERSION": "1.30.0"},
			"locality": map[string]any{"region": "r1", "zone": "z1"},
		},
	})
	if err != nil {
		return nil, err
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(fmt.Sprintf("xds:///%s.svc.cluster.local:%d", service, foPort), grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	cc.Connect() // leave idle: resolve (LDS → RDS → CDS → EDS) now
	c := &ackClient{proxy: proxy, cc: cc}
	want := "ADS:EDS: ACK " + proxy + "-"
	deadline := time.Now().Add(2 * time.Minute)
	for {
		found, err := ilog.contains(want)
		if err != nil || found {
			return c, err
		}
		if time.Now().After(deadline) {
			cc.Close()
			return nil, fmt.Errorf("xDS client %s for %s: no ACK of its endpoints in istiod's log %s within 2m", proxy, service, ilog.path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *ackClient) Close() { c.cc.Close() }

// contains reports whether istiod's whole log holds s.
func (l *istiodLog) contains(s string) (bool, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// ackSettle is how long after the last ACK seen no further response of the
// same push may appear before the last ACK counts as the push's.
const ackSettle = 150 * time.Millisecond

// pushTrace is what istiod's log shows of one push to one client: when
// its push context was built ("XDS: Pushing", which istiod logs after
// initPushContext), when each response to the client was sent (in
// istiod's push order: CDS, EDS, LDS, RDS for a proxyless client; the
// first follows the client's proxy state, i.e. its sidecar scope), and
// when istiod received the client's ACK of the last of them.
type pushTrace struct {
	pushing time.Time
	sent    []sentResponse
	acked   time.Time
}

// sentResponse is one response of a push to a client.
type sentResponse struct {
	typ string // CDS, EDS, LDS, RDS
	at  time.Time
}

// ackedAfter waits until the client has ACKed every response istiod sent
// it in the push that started at pushAt (its "Push debounce stable" line)
// and returns that push's trace: its acked is the time istiod received the
// last of those ACKs. It reads istiod's ads debug log (--log_output_level
// ads:debug): the push's version is the "XDS: Pushing … Version:V" line
// that follows the stable line; each response to the client is a "<type>:
// PUSH … for node:<proxy> … nonce:N version:V" line, and istiod logs
// "ADS:<type>: ACK <proxy>-<n> V N" when the client's request
// acknowledging nonce N arrives. A push that istiod merged for this client
// into a later one (its per-connection queue keeps one pending push) is
// answered with the later version: the first version at or after V
// counts. A NACK ("ACK ERROR") of this client fails the round.
func (l *istiodLog) ackedAfter(pushAt time.Time, c *ackClient, timeout time.Duration) (pushTrace, error) {
	deadline := time.Now().Add(timeout)
	for {
		tr, settled, err := l.scanAcks(pushAt, c.proxy)
		if err != nil {
			return pushTrace{}, err
		}
		if settled && time.Since(tr.acked) >= ackSettle {
			return tr, nil
		}
		if time.Now().After(deadline) {
			return pushTrace{}, fmt.Errorf("istiod log %s: xDS client %s did not ACK the push of %v within %v", l.path, c.proxy, pushAt.Format(time.RFC3339Nano), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scanAcks reads the log since skip: the trace of the first push to proxy
// at or after the push at pushAt, and whether every response of it was
// ACKed. (istiod may log a client's ACK before the line of the response it
// acknowledges: both are collected, then matched.)
func (l *istiodLog) scanAcks(pushAt time.Time, proxy string) (pushTrace, bool, error) {
	var tr pushTrace
	f, err := os.Open(l.path)
	if err != nil {
		return tr, false, err
	}
	defer f.Close()
	if _, err := f.Seek(l.offset, io.SeekStart); err != nil {
		return tr, false, err
	}
	nodeTag, ackTag, nackTag := " for node:"+proxy+" ", ": ACK "+proxy+"-", ": ACK ERROR "+proxy+"-"
	version, got := -1, -1 // counters of the push's version and of the one answered to proxy
	var sent []string      // nonces of the responses to proxy in version got
	acks := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ts, _, _ := strings.Cut(line, "\t")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || at.Before(pushAt) {
			continue // before the push, or a continuation line
		}
		switch {
		case version < 0 && strings.Contains(line, "XDS: Pushing "):
			_, v, _ := strings.Cut(line, " Version:")
			if version, err = versionCounter(v); err != nil {
				return tr, false, fmt.Errorf("istiod log %s: %q: %w", l.path, line, err)
			}
			tr.pushing = at
		case version >= 0 && strings.Contains(line, nodeTag) && strings.Contains(line, " nonce:"):
			_, rest, _ := strings.Cut(line, " nonce:")
			nonce, v, _ := strings.Cut(rest, " version:")
			n, err := versionCounter(v)
			if err != nil {
				return tr, false, fmt.Errorf("istiod log %s: %q: %w", l.path, line, err)
			}
			if n >= version && (got < 0 || n == got) {
				got = n
				sent = append(sent, nonce)
				msg, _, _ := strings.Cut(line, ": PUSH")
				tr.sent = append(tr.sent, sentResponse{typ: msg[strings.LastIndexAny(msg, "\t ")+1:], at: at})
			}
		case strings.Contains(line, nackTag):
			return tr, false, fmt.Errorf("istiod log %s: xDS client %s rejected a response: %s", l.path, proxy, line)
		case strings.Contains(line, ackTag):
			fields := strings.Fields(line)
			acks[fields[len(fields)-1]] = at
		}
	}
	if err := sc.Err(); err != nil {
		return tr, false, err
	}
	for _, nonce := range sent {
		at, ok := acks[nonce]
		if !ok {
			return tr, false, nil
		}
		if at.After(tr.acked) {
			tr.acked = at
		}
	}
	return tr, len(sent) > 0, nil
}

// versionCounter is the counter of an istiod push version ("<time>/<n>").
func versionCounter(v string) (int, error) {
	v = strings.TrimSpace(v)
	i := strings.LastIndexByte(v, '/')
	if i < 0 {
		return 0, fmt.Errorf("push version %q has no counter", v)
	}
	return strconv.Atoi(v[i+1:])
}

// firstRegion returns which of regions has the lowest priority (is tried
// first) in the endpoints istiod holds for the client's cluster of
// service: its /debug/config_dump?types=eds for the client, computed from
// the push context of the last push to it.
func (c *ackClient) firstRegion(httpAddr, service string, regions ...string) (string, error) {
	url := fmt.Sprintf("http://%s/debug/config_dump?proxyID=%s&types=eds", httpAddr, c.proxy)
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	var dump struct {
		Configs []struct {
			ClusterName string `json:"clusterName"`
			Endpoints   []struct {
				Locality struct{ Region string } `json:"locality"`
				Priority int                     `json:"priority"`
			} `json:"endpoints"`
		} `json:"configs"`
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	cluster := fmt.Sprintf("outbound|%d||%s.svc.cluster.local", foPort, service)
	best, first := -1, ""
	for _, cla := range dump.Configs {
		if cla.ClusterName != cluster {
			continue
		}
		for _, e := range cla.Endpoints {
			if slices.Contains(regions, e.Locality.Region) && (best < 0 || e.Priority < best) {
				best, first = e.Priority, e.Locality.Region
			}
		}
	}
	if first == "" {
		return "", fmt.Errorf("GET %s: no endpoints of %v in cluster %s: %.600s", url, regions, cluster, body)
	}
	return first, nil
}

// ruleTarget returns r1's failover target in the DestinationRule of
// istio-system istiod applies to host: the one for host itself, else the
// namespace's wildcard rule.
func ruleTarget(ctx context.Context, drs dynamic.ResourceInterface, host string) (string, error) {
	list, err := drs.List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	_, domain, _ := strings.Cut(host, ".")
	var exact, wildcard *unstructured.Unstructured
	for i := range list.Items {
		h, _, _ := unstructured.NestedString(list.Items[i].Object, "spec", "host")
		switch h {
		case host:
			exact = &list.Items[i]
		case "*." + domain:
			wildcard = &list.Items[i]
		}
	}
	dr := exact
	if dr == nil {
		dr = wildcard
	}
	if dr == nil {
		return "", fmt.Errorf("no DestinationRule in istio-system for %s", host)
	}
	fo, _, _ := unstructured.NestedSlice(dr.Object, "spec", "trafficPolicy", "loadBalancer", "localityLbSetting", "failover")
	for _, f := range fo {
		if m, ok := f.(map[string]any); ok && m["from"] == "r1" {
			to, _ := m["to"].(string)
			return to, nil
		}
	}
	return "", fmt.Errorf("DestinationRule %s: no failover from r1", dr.GetName())
}
