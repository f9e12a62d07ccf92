package render

import (
	"fmt"
	"net"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// FromRemoteIstio resolves a RemoteIstio into the ControlPlane of a remote
// cluster: what the remote needs so that the primary's istiod serves its
// proxies. Unset fields take the primary's values. Like FromIstio it is pure
// and names the field and the fix in every error.
func FromRemoteIstio(in *v1beta1.RemoteIstio, primary *ControlPlane) (*ControlPlane, field.ErrorList) {
	spec := &in.Spec
	p := field.NewPath("spec")
	var errs field.ErrorList

	cp := &ControlPlane{
		Owner:                 Owner{Kind: "RemoteIstio", Name: in.Name, Namespace: in.Namespace, UID: in.UID},
		Namespace:             primary.Namespace,
		ClusterName:           orDefault(spec.ClusterName, in.Name),
		Mode:                  primary.Mode,
		MeshID:                primary.MeshID,
		Kiali:                 primary.Kiali,
		Version:               orDefault(spec.Version, primary.Version),
		ChartVersion:          chartVersion(orDefault(spec.Version, primary.Version)),
		LogLevel:              primary.LogLevel,
		SidecarInjection:      boolOr(spec.SidecarInjector.Enabled, true),
		IstiodReplicas:        int32Or(spec.SidecarInjector.ReplicaCount, 1),
		InjectionNamespaces:   spec.AutoInjectionNamespaces,
		MTLSMode:              primary.MTLSMode,
		OutboundTrafficPolicy: primary.OutboundTrafficPolicy,
		TraceSamplingPercent:  primary.TraceSamplingPercent,
		LocalityLB:            primary.LocalityLB,
		Remote:                &Remote{Primary: primary.Owner, PilotAddress: spec.PilotAddress},
	}
	if a := spec.PilotAddress; a != "" && !isHost(a) {
		errs = append(errs, field.Invalid(p.Child("pilotAddress"), a,
			"use the IP address or DNS name of the primary's east-west gateway"))
	}
	if spec.Version != "" {
		errs = append(errs, checkVersion(p.Child("version"), spec.Version)...)
	}
	errs = append(errs, checkNetwork(p.Child("network"), spec.Network)...)
	if ip := net.ParseIP(spec.PilotAddress); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		errs = append(errs, field.Invalid(p.Child("pilotAddress"), spec.PilotAddress,
			"a loopback or unspecified address cannot be reached from the remote's pods (nor registered as an endpoint); use the address of the primary's east-west gateway"))
	}
	errs = append(errs, checkClusterName(spec.ClusterName, in.Name, p)...)
	if cp.ClusterName == primary.ClusterName {
		errs = append(errs, field.Invalid(p.Child("clusterName"), cp.ClusterName,
			fmt.Sprintf("the primary (Istio %s/%s) already uses this cluster name; give the remote cluster a name of its own",
				primary.Owner.Namespace, primary.Owner.Name)))
	}

	switch primary.Mode {
	case v1beta1.MultiClusterFlatNetwork:
		cp.Network = orDefault(spec.Network, primary.Network)
	case v1beta1.MultiClusterGatewayConnected:
		cp.Network = orDefault(spec.Network, "network-"+cp.ClusterName)
	default:
		errs = append(errs, field.Invalid(field.NewPath("spec", "istioRef"), primary.Owner.Name,
			fmt.Sprintf("Istio %s/%s has spec.multiCluster.mode %q, which admits no remote clusters; set it to flatNetwork or gatewayConnected",
				primary.Owner.Namespace, primary.Owner.Name, primary.Mode)))
	}

	hub := primary.Hub
	if spec.Hub != "" || spec.DockerImage.Region != "" {
		h, err := resolveHub(orDefault(spec.Hub, primary.Hub), spec.DockerImage.Region)
		if err != nil {
			errs = append(errs, field.Invalid(p.Child("hub"), spec.Hub, err.Error()))
		}
		hub = h
	}
	cp.Hub = hub

	errs = append(errs, checkRemoteInjection(spec, primary, p)...)
	// The primary's istiod injects the remote's pods with its own values.
	cp.Proxy = primary.Proxy
	errs = append(errs, checkInjectionNamespaces(cp.InjectionNamespaces, cp.Namespace, p.Child("autoInjectionNamespaces"))...)
	cp.GatewayNamespace = GatewayNamespace
	cp.Gateways, errs = resolveGateways(spec.Gateways, cp.Mode == v1beta1.MultiClusterGatewayConnected, p.Child("gateways"), errs)

	sec := spec.Security
	if sec.SelfSigned != nil || sec.CASecretRef != nil || sec.ExternalCA != nil {
		errs = append(errs, field.Forbidden(p.Child("security"),
			"a remote cluster's intermediate CA always chains to the primary's root; remove selfSigned, caSecretRef and externalCA (set them on the Istio resource)"))
	}
	cp.CA = primary.CA
	if primary.CA.External != nil {
		for _, f := range []struct {
			name string
			set  bool
		}{{"intermediateCertTTL", sec.IntermediateCertTTL != nil}, {"renewBefore", sec.RenewBefore != nil}} {
			if f.set {
				errs = append(errs, field.Forbidden(p.Child("security", f.name),
					"the primary's Istio uses externalCA: you sign this cluster's intermediate yourself and choose its lifetime then (meshctl ca sign-intermediate --ttl)"))
			}
		}
	} else if len(errs) == 0 && (sec.IntermediateCertTTL != nil || sec.RenewBefore != nil) {
		var ca CA
		ca, errs = resolveCA(remoteSecurity(sec, primary.CA), p.Child("security"), errs)
		cp.CA.IntermediateTTL, cp.CA.RenewBefore = ca.IntermediateTTL, ca.RenewBefore
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cp, nil
}

// remoteSecurity completes a remote's lifetime settings with the primary's
// root settings, so that resolveCA checks them together.
func remoteSecurity(s v1beta1.SecuritySpec, primary CA) v1beta1.SecuritySpec {
	t := true
	s.SelfSigned, s.CASecretRef = &t, nil
	root := v1beta1.Duration(primary.RootTTL.Duration.String())
	s.RootCertTTL = &root
	return s
}

// checkRemoteInjection refuses the RemoteIstio fields that would have no
// effect in the remote: no injector runs there. The primary's istiod injects
// the remote's pods through /inject/cluster/<c>/net/<n>, which sets only the
// cluster ID and network; the sidecar values (IP ranges, proxy settings) are
// the primary's, one set for every cluster. A value equal to the primary's is
// accepted, as it is what applies. Ingress objects are read by istiod from
// the primary (the config cluster) only.
func checkRemoteInjection(spec *v1beta1.RemoteIstioSpec, primary *ControlPlane, p *field.Path) field.ErrorList {
	ref := fmt.Sprintf("Istio %s/%s", primary.Owner.Namespace, primary.Owner.Name)
	injected := "the primary's istiod injects this cluster's pods with the primary's values (its remote injection path /inject/cluster/<c>/net/<n> sets only the cluster ID and network)"
	remote, errs := resolveProxy(spec.Proxy, orDefault(spec.IncludeIPRanges, primary.Proxy.IncludeIPRanges), orDefault(spec.ExcludeIPRanges, primary.Proxy.ExcludeIPRanges), p, nil)
	if len(errs) > 0 {
		return errs
	}
	if spec.IncludeIPRanges != "" && remote.IncludeIPRanges != primary.Proxy.IncludeIPRanges {
		errs = append(errs, field.Forbidden(p.Child("includeIPRanges"), fmt.Sprintf(
			"%s; set spec.includeIPRanges on %s (every cluster) or annotate the workloads with traffic.sidecar.istio.io/includeOutboundIPRanges", injected, ref)))
	}
	if spec.ExcludeIPRanges != "" && remote.ExcludeIPRanges != primary.Proxy.ExcludeIPRanges {
		errs = append(errs, field.Forbidden(p.Child("excludeIPRanges"), fmt.Sprintf(
			"%s; set spec.excludeIPRanges on %s (every cluster) or annotate the workloads with traffic.sidecar.istio.io/excludeOutboundIPRanges", injected, ref)))
	}
	if spec.Proxy != (v1beta1.ProxySpec{}) && !equality.Semantic.DeepEqual(withIPRanges(remote, primary.Proxy), primary.Proxy) {
		errs = append(errs, field.Forbidden(p.Child("proxy"), fmt.Sprintf(
			"%s; set spec.proxy on %s (every cluster) or annotate the workloads (sidecar.istio.io/proxyCPU, proxy.istio.io/config …)", injected, ref)))
	}
	if spec.SidecarInjector.ReplicaCount != nil {
		errs = append(errs, field.Forbidden(p.Child("sidecarInjector", "replicaCount"), fmt.Sprintf(
			"no injector runs in a remote cluster: %s; remove it and scale istiod with spec.sidecarInjector.replicaCount on %s", injected, ref)))
	}
	for i, g := range spec.Gateways.Ingress {
		if g.K8sIngress != nil {
			errs = append(errs, field.Forbidden(p.Child("gateways", "ingress").Index(i).Child("k8sIngress"), fmt.Sprintf(
				"istiod reads Kubernetes Ingress objects from the primary (the config cluster) only; remove it here and set k8sIngress on an ingress gateway of %s", ref)))
		}
	}
	if v := spec.Version; v != "" && minorLess(minorOf(primary.Version), minorOf(v)) {
		errs = append(errs, field.Invalid(p.Child("version"), v, fmt.Sprintf(
			"the remote's proxies connect to the primary's istiod, which runs %s; a proxy newer than istiod is not supported: use %s or older, or upgrade %s first", primary.Version, minorOf(primary.Version)+".x", ref)))
	}
	return errs
}

// withIPRanges returns p with the IP ranges of q, so that proxy settings
// compare apart from them.
func withIPRanges(p, q Proxy) Proxy {
	p.IncludeIPRanges, p.ExcludeIPRanges = q.IncludeIPRanges, q.ExcludeIPRanges
	return p
}
