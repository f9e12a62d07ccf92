package check

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Endpoints are where meshctl reaches the components' HTTP endpoints. An
// empty field means no address is known; checks that need it warn with
// the hint to give one.
type Endpoints struct {
	// IstiodDebug serves istiod's /debug endpoints (its monitoring port
	// 15014, or --httpAddr out of a cluster).
	IstiodDebug string `json:"istiodDebug,omitempty"`
	// TunnelMetrics is the active tunnel server's /metrics URL.
	TunnelMetrics string `json:"tunnelMetrics,omitempty"`
	// LocalityDebug is the locality server's debug address (its
	// --debug-addr, serving /debug/locality).
	LocalityDebug string `json:"localityDebug,omitempty"`
}

// EndpointsExtension names the kubeconfig context extension that carries
// Endpoints as JSON. The sandbox writes it into its primary's kubeconfig.
const EndpointsExtension = "meshfleet.io/endpoints"

// Or returns e with every empty field taken from d.
func (e Endpoints) Or(d Endpoints) Endpoints {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return Endpoints{IstiodDebug: pick(e.IstiodDebug, d.IstiodDebug), TunnelMetrics: pick(e.TunnelMetrics, d.TunnelMetrics),
		LocalityDebug: pick(e.LocalityDebug, d.LocalityDebug)}
}

// EndpointsFromKubeconfig returns the endpoints carried by the context
// (the current one if context is ""), or none.
func EndpointsFromKubeconfig(cfg *clientcmdapi.Config, context string) (Endpoints, error) {
	if context == "" {
		context = cfg.CurrentContext
	}
	ctx := cfg.Contexts[context]
	if ctx == nil {
		return Endpoints{}, nil
	}
	ext, found := ctx.Extensions[EndpointsExtension]
	if !found {
		return Endpoints{}, nil
	}
	u, isUnknown := ext.(*runtime.Unknown)
	if !isUnknown {
		return Endpoints{}, fmt.Errorf("kubeconfig context %q: extension %s is not JSON", context, EndpointsExtension)
	}
	var e Endpoints
	if err := json.Unmarshal(u.Raw, &e); err != nil {
		return Endpoints{}, fmt.Errorf("kubeconfig context %q: extension %s: %w", context, EndpointsExtension, err)
	}
	return e, nil
}

// WriteEndpoints records e in the current context of the kubeconfig file
// at path.
func WriteEndpoints(path string, e Endpoints) error {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return fmt.Errorf("reading kubeconfig %s: %w", path, err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return fmt.Errorf("kubeconfig %s has no current context", path)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if ctx.Extensions == nil {
		ctx.Extensions = map[string]runtime.Object{}
	}
	ctx.Extensions[EndpointsExtension] = &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}
