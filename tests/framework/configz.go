package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/pkg/locality"
)

// GeneratedRules reads a ready istiod's /debug/configz and returns the names
// (namespace/name) of the DestinationRules the locality server generated.
// An istiod that is not ready (starting, its caches not synced) is an
// error, not an empty set: no proxy is sent to it, and it serves nothing.
func GeneratedRules(ctx context.Context, istiodHTTP string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ready, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+istiodHTTP+"/ready", nil)
	if err != nil {
		return nil, err
	}
	rresp, err := http.DefaultClient.Do(ready)
	if err != nil {
		return nil, err
	}
	rresp.Body.Close()
	if rresp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("istiod not ready: GET /ready: %s", rresp.Status)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+istiodHTTP+"/debug/configz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /debug/configz: %s", resp.Status)
	}
	var cfgs []struct {
		Kind     string            `json:"kind"`
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cfgs); err != nil {
		return nil, fmt.Errorf("GET /debug/configz: %w", err)
	}
	out := map[string]bool{}
	for _, c := range cfgs {
		if c.Kind == "DestinationRule" && strings.HasPrefix(c.Metadata.Name, locality.NamePrefix) {
			out[c.Metadata.Namespace+"/"+c.Metadata.Name] = true
		}
	}
	return out, nil
}
