package render

import (
	"encoding/json"
	"fmt"
)

// The functions below map a ControlPlane onto the values of each chart. They
// set only what the Istio resource decides; the charts' defaults cover the rest.

// baseValues are the base chart's values: only the namespace, which is why
// its objects can be cached per namespace (baseObjects).
func baseValues(namespace string) map[string]any {
	return map[string]any{
		"global": map[string]any{"istioNamespace": namespace},
	}
}

func istiodValues(cp *ControlPlane) (map[string]any, error) {
	mesh, err := messageToMap(MeshConfig(cp))
	if err != nil {
		return nil, err
	}
	// protojson leaves out enum zero values, and REGISTRY_ONLY is zero.
	mesh["outboundTrafficPolicy"] = map[string]any{"mode": cp.OutboundTrafficPolicy}
	proxy := map[string]any{
		"includeIPRanges": cp.Proxy.IncludeIPRanges,
		"excludeIPRanges": cp.Proxy.ExcludeIPRanges,
	}
	if cp.Proxy.LogLevel != "" {
		proxy["logLevel"] = cp.Proxy.LogLevel
	}
	if cp.Proxy.Resources != nil {
		res, err := toMap(cp.Proxy.Resources)
		if err != nil {
			return nil, fmt.Errorf("proxy resources: %w", err)
		}
		proxy["resources"] = res
	}
	global := map[string]any{
		"hub":                          cp.Hub,
		"tag":                          cp.Version,
		"istioNamespace":               cp.Namespace,
		"meshID":                       cp.MeshID,
		"multiCluster":                 map[string]any{"clusterName": cp.ClusterName},
		"network":                      cp.Network,
		"meshNetworks":                 MeshNetworks(cp),
		"proxy":                        proxy,
		"omitSidecarInjectorConfigMap": !cp.SidecarInjection,
	}
	if cp.LogLevel != "" {
		global["logging"] = map[string]any{"level": cp.LogLevel}
	}
	v := map[string]any{
		"replicaCount":     cp.IstiodReplicas,
		"autoscaleEnabled": false,
		"traceSampling":    cp.TraceSamplingPercent,
		"meshConfig":       mesh,
		"global":           global,
	}
	if r := cp.Remote; r != nil {
		// Istio's remote profile: no istiod here; the injection webhook and
		// proxies reach the primary's istiod at PilotAddress.
		v["profile"] = "remote"
		v["istiodRemote"] = map[string]any{
			"enabled":       true,
			"injectionPath": fmt.Sprintf("/inject/cluster/%s/net/%s", cp.ClusterName, cp.Network),
		}
		global["remotePilotAddress"] = r.PilotAddress
		global["configCluster"] = false
		global["omitSidecarInjectorConfigMap"] = true
	}
	env := map[string]any{}
	if cp.Remote == nil {
		// The operator reads istiod's /debug/syncz for the fleet rollout's
		// xDS gate (decision 60); istiod answers its debug endpoints only to
		// the system namespace and the namespaces listed here.
		env["DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES"] = TunnelServerNamespace
	}
	if cp.Remote == nil && cp.UsesTunnel() {
		// Remote secrets of tunnelled clusters authenticate istiod with its
		// own token file, which istiod refuses unless allowed here. Only then:
		// the option lets any remote secret make istiod read a local file.
		env["PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS"] = "tokenFile"
	}
	for _, g := range cp.Gateways {
		if g.IngressClass != "" {
			// istiod looks for meshConfig.ingressService in this namespace
			// (its own by default) to report Ingress addresses.
			env["K8S_INGRESS_NS"] = cp.GatewayNamespace
		}
	}
	if len(env) > 0 {
		v["env"] = env
	}
	if cp.Revision != "" {
		// The chart names istiod, its ConfigMaps and webhooks after the
		// revision and selects pods and namespaces by istio.io/rev.
		v["revision"] = cp.Revision
	}
	if len(cp.RevisionTags) > 0 {
		tags := make([]any, 0, len(cp.RevisionTags))
		for _, t := range cp.RevisionTags {
			tags = append(tags, t)
		}
		v["revisionTags"] = tags
	}
	if cp.ClosePlaintextXDS {
		// An empty address disables istiod's plain-text gRPC server.
		v["extraContainerArgs"] = []any{"--grpcAddr="}
	}
	return v, nil
}

func gatewayValues(cp *ControlPlane, gw Gateway) map[string]any {
	v := map[string]any{
		"replicaCount": gw.Replicas,
		"autoscaling":  map[string]any{"enabled": false},
		"service":      map[string]any{"type": string(gw.ServiceType)},
		"global":       map[string]any{"hub": cp.Hub, "tag": cp.Version, "istioNamespace": cp.Namespace},
	}
	if cp.Remote != nil {
		// The primary's istiod injects the proxy with its own hub and tag
		// (image: auto); the annotation gives the remote's gateways the
		// remote's hub, region and version instead.
		v["podAnnotations"] = map[string]any{"sidecar.istio.io/proxyImage": cp.Hub + "/proxyv2:" + cp.Version}
	}
	// Replicas spread over zones (and nodes), so that one zone's loss
	// leaves each cluster's entry point up (MeshIngress, issue 14).
	// ScheduleAnyway: a single-zone cluster still schedules every replica.
	spread := func(key string) map[string]any {
		return map[string]any{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
			"labelSelector": map[string]any{"matchLabels": map[string]any{"app": gw.Name}}}
	}
	v["topologySpreadConstraints"] = []any{spread("topology.kubernetes.io/zone"), spread("kubernetes.io/hostname")}
	if gw.Kind == EastWestGateway {
		// The chart also sets ISTIO_META_REQUESTED_NETWORK_VIEW and the network label from this.
		v["networkGateway"] = cp.Network
	}
	return v
}

func meshValues(cp *ControlPlane) map[string]any {
	v := map[string]any{
		"mtlsMode":         cp.MTLSMode,
		"crossNetworkPort": CrossNetworkPort,
		"exposeIstiod":     cp.ExposeIstiod,
		"eastWestGateway":  "",
		"gatewayNamespace": cp.GatewayNamespace,
		"istiodService":    "istiod",
	}
	if cp.Revision != "" {
		// No unrevisioned istiod: each revision's istiod is reached by the
		// SNI its proxies and webhooks use (istiod-<rev>.<ns>.svc), anything
		// else goes to the default tag's Service.
		revs := make([]any, 0, len(cp.InstalledRevisions))
		for _, r := range cp.InstalledRevisions {
			revs = append(revs, r)
		}
		v["istiodRevisions"] = revs
		v["istiodService"] = TagServiceName(DefaultTag)
	}
	for _, g := range cp.Gateways {
		if g.Kind == EastWestGateway {
			v["eastWestGateway"] = g.Name
		}
	}
	return v
}

// toMap converts a typed value to the generic form Helm values hold.
func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	return out, json.Unmarshal(b, &out)
}
