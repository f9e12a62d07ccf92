package render

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
)

// MeshConfig returns the MeshConfig of the control plane: the settings of the
// Istio resource that istiod and every proxy read from the "istio" ConfigMap.
// Istio's chart merges it over its own defaults.
func MeshConfig(cp *ControlPlane) *meshv1alpha1.MeshConfig {
	mc := &meshv1alpha1.MeshConfig{
		RootNamespace: cp.Namespace,
		OutboundTrafficPolicy: &meshv1alpha1.MeshConfig_OutboundTrafficPolicy{
			Mode: meshv1alpha1.MeshConfig_OutboundTrafficPolicy_Mode(
				meshv1alpha1.MeshConfig_OutboundTrafficPolicy_Mode_value[cp.OutboundTrafficPolicy]),
		},
		EnableTracing: cp.TraceSamplingPercent > 0,
		DefaultConfig: &meshv1alpha1.ProxyConfig{
			Tracing: &meshv1alpha1.Tracing{Sampling: cp.TraceSamplingPercent},
		},
		LocalityLbSetting: &networkingv1alpha3.LocalityLoadBalancerSetting{
			Enabled: wrapperspb.Bool(cp.LocalityLB.Enabled),
		},
	}
	// No configSources: istiod reads the locality server's DestinationRules
	// from the Kubernetes API like any other (k8s://, its default), so it
	// never depends on the server being up (spec.localityLB.serverAddress
	// is deprecated and unused).
	for _, f := range cp.LocalityLB.Failover {
		mc.LocalityLbSetting.Failover = append(mc.LocalityLbSetting.Failover,
			&networkingv1alpha3.LocalityLoadBalancerSetting_Failover{From: f.From, To: f.To})
	}
	if cp.Proxy.Concurrency != nil {
		mc.DefaultConfig.Concurrency = wrapperspb.Int32(*cp.Proxy.Concurrency)
	}
	if cp.Proxy.HoldApplicationUntilProxyStarts {
		mc.DefaultConfig.HoldApplicationUntilProxyStarts = wrapperspb.Bool(true)
	}
	for _, g := range cp.Gateways {
		if g.IngressClass != "" {
			mc.IngressControllerMode = meshv1alpha1.MeshConfig_STRICT
			mc.IngressClass = g.IngressClass
			mc.IngressService = g.Name
			mc.IngressSelector = g.Name
		}
	}
	return mc
}

// MeshNetworks returns istiod's meshNetworks: for each network, the clusters
// whose endpoints are on it and the east-west gateway that reaches it. It is
// empty unless clusters are gateway-connected.
func MeshNetworks(cp *ControlPlane) map[string]any {
	if cp.Network == "" {
		return map[string]any{}
	}
	type network struct {
		registries []string
	}
	order := []string{cp.Network}
	byNet := map[string]*network{cp.Network: {registries: []string{cp.ClusterName}}}
	for _, m := range cp.Members {
		if m.Network == "" {
			m.Network = cp.Network
		}
		n, ok := byNet[m.Network]
		if !ok {
			n = &network{}
			byNet[m.Network] = n
			order = append(order, m.Network)
		}
		n.registries = append(n.registries, m.ClusterName)
	}
	out := map[string]any{}
	for _, name := range order {
		var endpoints []any
		for _, r := range byNet[name].registries {
			endpoints = append(endpoints, map[string]any{"fromRegistry": r})
		}
		net := map[string]any{"endpoints": endpoints}
		if cp.Mode == "gatewayConnected" {
			net["gateways"] = []any{map[string]any{
				"registryServiceName": fmt.Sprintf("%s.%s.svc.cluster.local", EastWestGatewayName, cp.GatewayNamespace),
				"port":                CrossNetworkPort,
			}}
		}
		out[name] = net
	}
	return out
}

// messageToMap turns MeshConfig into the generic map Helm values hold.
func messageToMap(msg *meshv1alpha1.MeshConfig) (map[string]any, error) {
	b, err := protojson.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("marshal MeshConfig: %w", err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("unmarshal MeshConfig: %w", err)
	}
	return out, nil
}
