package render

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
)

// Defaults applied when the spec leaves a field empty.
const (
	DefaultHub             = "docker.io/istio"
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 365 * 24 * time.Hour
	DefaultTraceSampling   = 1.0
	DefaultIngressGateway  = "istio-ingressgateway"
	DefaultIngressClass    = "istio"
)

var logLevelPattern = regexp.MustCompile(`^([a-zA-Z0-9_-]+:(none|error|warn|info|debug))(,[a-zA-Z0-9_-]+:(none|error|warn|info|debug))*$`)

// FromIstio resolves an Istio resource into a ControlPlane. It applies every
// default and checks what the CRD schema cannot; each error names the field,
// the value and the fix. It reads nothing but its argument.
func FromIstio(in *v1beta1.Istio) (*ControlPlane, field.ErrorList) {
	spec := &in.Spec
	p := field.NewPath("spec")
	var errs field.ErrorList

	cp := &ControlPlane{
		Owner:                 Owner{Kind: "Istio", Name: in.Name, Namespace: in.Namespace, UID: in.UID},
		Namespace:             in.Namespace,
		ClusterName:           orDefault(spec.ClusterName, in.Name),
		Mode:                  spec.MultiCluster.Mode,
		MeshID:                in.Name,
		Kiali:                 spec.Kiali.Enabled,
		Version:               spec.Version,
		ChartVersion:          chartVersion(spec.Version),
		LogLevel:              spec.Logging.Level,
		ClosePlaintextXDS:     spec.ControlPlaneSecurityEnabled,
		SidecarInjection:      boolOr(spec.SidecarInjector.Enabled, true),
		IstiodReplicas:        int32Or(spec.SidecarInjector.ReplicaCount, 1),
		InjectionNamespaces:   spec.AutoInjectionNamespaces,
		MTLSMode:              "PERMISSIVE",
		OutboundTrafficPolicy: orDefault(spec.OutboundTrafficPolicy.Mode, "ALLOW_ANY"),
		TraceSamplingPercent:  DefaultTraceSampling,
		LocalityLB:            LocalityLB{Enabled: spec.LocalityLB.Enabled, ServerAddress: spec.LocalityLB.ServerAddress, Failover: spec.LocalityLB.Failover},
	}
	if cp.Mode == "" {
		cp.Mode = v1beta1.MultiClusterNone
	}
	if spec.MTLS.Enabled {
		cp.MTLSMode = "STRICT"
	}
	if spec.Tracing.SamplingPercent != nil {
		cp.TraceSamplingPercent = *spec.Tracing.SamplingPercent
		if v := cp.TraceSamplingPercent; v < 0 || v > 100 {
			errs = append(errs, field.Invalid(p.Child("tracing", "samplingPercent"), v, "must be between 0 and 100"))
		}
	}
	if spec.Version == "" {
		errs = append(errs, field.Required(p.Child("version"), "set the Istio release to install, e.g. 1.30.3"))
	} else {
		errs = append(errs, checkVersion(p.Child("version"), spec.Version)...)
	}
	errs = append(errs, checkNetwork(p.Child("network"), spec.Network)...)
	if m := cp.OutboundTrafficPolicy; m != "ALLOW_ANY" && m != "REGISTRY_ONLY" {
		errs = append(errs, field.NotSupported(p.Child("outboundTrafficPolicy", "mode"), m, []string{"REGISTRY_ONLY", "ALLOW_ANY"}))
	}
	errs = append(errs, checkClusterName(spec.ClusterName, in.Name, p)...)
	errs = append(errs, checkReplicas(p.Child("sidecarInjector", "replicaCount"), spec.SidecarInjector.ReplicaCount, 1)...)

	hub, err := resolveHub(orDefault(spec.Hub, DefaultHub), spec.DockerImage.Region)
	if err != nil {
		errs = append(errs, field.Invalid(p.Child("hub"), spec.Hub, err.Error()))
	}
	cp.Hub = hub

	if cp.LogLevel != "" && !logLevelPattern.MatchString(cp.LogLevel) {
		errs = append(errs, field.Invalid(p.Child("logging", "level"), cp.LogLevel,
			"use comma-separated scope:level pairs such as default:info,ads:debug (levels: none, error, warn, info, debug)"))
	}

	cp.Proxy, errs = resolveProxy(spec.Proxy, spec.IncludeIPRanges, spec.ExcludeIPRanges, p, errs)

	switch cp.Mode {
	case v1beta1.MultiClusterGatewayConnected:
		cp.Network = orDefault(spec.Network, "network-"+cp.ClusterName)
		cp.ExposeIstiod = true
	case v1beta1.MultiClusterNone, v1beta1.MultiClusterFlatNetwork:
		cp.Network = spec.Network
	default:
		errs = append(errs, field.NotSupported(p.Child("multiCluster", "mode"), cp.Mode,
			[]string{string(v1beta1.MultiClusterNone), string(v1beta1.MultiClusterFlatNetwork), string(v1beta1.MultiClusterGatewayConnected)}))
	}
	if spec.MeshExpansion.Enabled {
		cp.ExposeIstiod = true
	}

	if a := cp.LocalityLB.ServerAddress; a != "" {
		if host, port, err := net.SplitHostPort(a); err != nil || port == "" || !isHost(host) {
			errs = append(errs, field.Invalid(p.Child("localityLB", "serverAddress"), a,
				"use host:port of the locality server, e.g. meshfleet-locality.meshfleet-system.svc:15020"))
		}
	}
	for i, f := range cp.LocalityLB.Failover {
		for _, r := range []struct{ name, v string }{{"from", f.From}, {"to", f.To}} {
			for _, msg := range validation.IsValidLabelValue(r.v) {
				errs = append(errs, field.Invalid(p.Child("localityLB", "failover").Index(i).Child(r.name), r.v,
					"a region is a node label value ("+msg+"), e.g. us-east1"))
			}
		}
		if f.From == f.To {
			errs = append(errs, field.Invalid(p.Child("localityLB", "failover").Index(i).Child("to"), f.To,
				"a region cannot fail over to itself; name a different region"))
		}
	}
	errs = append(errs, checkInjectionNamespaces(cp.InjectionNamespaces, cp.Namespace, p.Child("autoInjectionNamespaces"))...)

	cp.GatewayNamespace = GatewayNamespace
	cp.Gateways, errs = resolveGateways(spec.Gateways, cp.Mode == v1beta1.MultiClusterGatewayConnected || cp.ExposeIstiod, p.Child("gateways"), errs)
	cp.CA, errs = resolveCA(spec.Security, p.Child("security"), errs)

	if len(errs) > 0 {
		return nil, errs
	}
	return cp, nil
}

// resolveHub applies the regional mirror to the hub and checks that the
// result is an image repository (registry and path, no tag or digest), the
// form that goes into every container image the charts render.
func resolveHub(hub, region string) (string, error) {
	if strings.ContainsAny(hub, unsafeHubChars) {
		return "", repositoryError("it holds a quote, a space or a line break")
	}
	if strings.Contains(hub, "@") {
		return "", fmt.Errorf("not an image repository (it carries a digest); use a registry and repository such as docker.io/istio")
	}
	if last := hub[strings.LastIndex(hub, "/")+1:]; strings.Contains(last, ":") {
		return "", fmt.Errorf("the hub must not carry a tag; put the release in spec.version")
	}
	out, err := applyRegion(hub, region)
	if err != nil {
		return "", err
	}
	if err := checkRepository(out); err != nil {
		return "", err
	}
	return out, nil
}

func applyRegion(hub, region string) (string, error) {
	if strings.Contains(hub, "{region}") {
		if region == "" {
			return "", fmt.Errorf("the hub contains {region} but dockerImage.region is empty; set the region, or remove {region} from the hub")
		}
		return strings.ReplaceAll(hub, "{region}", region), nil
	}
	if region == "" {
		return hub, nil
	}
	host, path, found := strings.Cut(hub, "/")
	if !found || !strings.Contains(host, ".") {
		return "", fmt.Errorf("dockerImage.region needs a hub whose host is a registry domain (e.g. registry.example.com/istio) or contains {region}")
	}
	first, rest, _ := strings.Cut(host, ".")
	return first + "." + region + "." + rest + "/" + path, nil
}

// checkRepository accepts only what container runtimes accept as an image
// repository name (lower-case path, optional registry host and port).
func checkRepository(hub string) error {
	named, err := reference.ParseNormalizedNamed(hub)
	switch {
	case len(hub) > maxHubLength:
		return repositoryError(fmt.Sprintf("%d characters, at most %d", len(hub), maxHubLength))
	case err != nil:
		return repositoryError(err.Error())
	case !reference.IsNameOnly(named):
		return repositoryError("it is not a plain repository name")
	}
	return nil
}

// unsafeHubChars can never be in an image reference, and would break out of
// the YAML and shell contexts the hub is rendered into.
const unsafeHubChars = "\"'`\n\r\t \\$"

func repositoryError(problem string) error {
	return fmt.Errorf("not an image repository (%s); use a registry host and a lower-case repository path of letters, digits, '.', '_', '-' and '/', such as docker.io/istio or registry.example.com:5000/istio", problem)
}

// maxHubLength leaves room for "/<component>:<tag>" within the 255
// characters of an image reference.
const maxHubLength = 200

// Names that may not be injection namespaces: Kubernetes' own (a sidecar
// webhook there can stop the cluster's system pods) and the control plane's.
var reservedNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

func checkInjectionNamespaces(names []string, controlPlane string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, ns := range names {
		for _, msg := range validation.IsDNS1123Label(ns) {
			errs = append(errs, field.Invalid(p.Index(i), ns, msg))
		}
		switch {
		case reservedNamespaces[ns]:
			errs = append(errs, field.Invalid(p.Index(i), ns,
				"Kubernetes' own namespaces cannot get sidecar injection (their system pods would depend on istiod); remove it from the list"))
		case ns == controlPlane:
			errs = append(errs, field.Invalid(p.Index(i), ns,
				"the control-plane namespace cannot get sidecar injection (istiod would inject itself); remove it from the list"))
		}
	}
	return errs
}

// checkClusterName checks the cluster name in use: spec.clusterName, or the
// resource's name when it is unset (which may hold dots and 253 characters,
// neither of which a cluster ID may).
func checkClusterName(clusterName, objectName string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if clusterName != "" {
		for _, msg := range validation.IsDNS1123Label(clusterName) {
			errs = append(errs, field.Invalid(p.Child("clusterName"), clusterName, msg))
		}
		return errs
	}
	for _, msg := range validation.IsDNS1123Label(objectName) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), objectName,
			fmt.Sprintf("the cluster name defaults to the resource's name, which is not a valid cluster name: %s; set spec.clusterName to a DNS-1123 label (lower case, digits and '-', at most 63 characters, no dots)", msg)))
	}
	return errs
}

// versionPattern is the CRD schema's pattern for spec.version: the image tag.
var versionPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+([-+.][0-9A-Za-z.-]+)?$`)

func checkVersion(p *field.Path, v string) field.ErrorList {
	if !versionPattern.MatchString(v) || len(v) > 100 {
		return field.ErrorList{field.Invalid(p, v, "use an Istio release such as 1.30.3 (it becomes the image tag)")}
	}
	if _, err := ChartSetFor(v); err != nil {
		return field.ErrorList{field.Invalid(p, v, err.Error())}
	}
	return nil
}

// chartVersion is the chart set label for version v, "" when v has none
// (checkVersion reports that).
func chartVersion(v string) string {
	s, err := ChartSetFor(v)
	if err != nil {
		return ""
	}
	return s.Version
}

func checkNetwork(p *field.Path, network string) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidLabelValue(network) {
		errs = append(errs, field.Invalid(p, network, "the network name is a label value: "+msg))
	}
	return errs
}

var serviceTypes = []string{string(corev1.ServiceTypeLoadBalancer), string(corev1.ServiceTypeNodePort), string(corev1.ServiceTypeClusterIP)}

func checkServiceType(p *field.Path, t corev1.ServiceType) field.ErrorList {
	if t == "" || slices.Contains(serviceTypes, string(t)) {
		return nil
	}
	return field.ErrorList{field.NotSupported(p, t, serviceTypes)}
}

// isHost reports whether s is an IP address or a DNS name.
func isHost(s string) bool {
	return net.ParseIP(s) != nil || len(validation.IsDNS1123Subdomain(strings.ToLower(s))) == 0
}

// MaxReplicas bounds every replica count of the spec.
const MaxReplicas = 100

func checkReplicas(p *field.Path, n *int32, minimum int32) field.ErrorList {
	if n == nil || (*n >= minimum && *n <= MaxReplicas) {
		return nil
	}
	return field.ErrorList{field.Invalid(p, *n, fmt.Sprintf("must be between %d and %d", minimum, MaxReplicas))}
}

// proxyLogLevels are the levels Envoy accepts.
var proxyLogLevels = []string{"trace", "debug", "info", "warning", "error", "critical", "off"}

func resolveProxy(in v1beta1.ProxySpec, include, exclude string, p *field.Path, errs field.ErrorList) (Proxy, field.ErrorList) {
	if in.LogLevel != "" && !slices.Contains(proxyLogLevels, in.LogLevel) {
		errs = append(errs, field.NotSupported(p.Child("proxy", "logLevel"), in.LogLevel, proxyLogLevels))
	}
	if in.Concurrency != nil && (*in.Concurrency < 0 || *in.Concurrency > 1024) {
		errs = append(errs, field.Invalid(p.Child("proxy", "concurrency"), *in.Concurrency, "must be between 0 (one worker per core) and 1024"))
	}
	out := Proxy{
		IncludeIPRanges: orDefault(strings.TrimSpace(include), "*"),
		ExcludeIPRanges: strings.TrimSpace(exclude),
		Concurrency:     in.Concurrency,
		LogLevel:        in.LogLevel,
		Resources:       in.Resources,
	}
	if in.HoldApplicationUntilProxyStarts != nil {
		out.HoldApplicationUntilProxyStarts = *in.HoldApplicationUntilProxyStarts
	}
	if out.IncludeIPRanges != "*" {
		errs = append(errs, checkCIDRs(p.Child("includeIPRanges"), out.IncludeIPRanges, `or "*" for all`)...)
	}
	errs = append(errs, checkCIDRs(p.Child("excludeIPRanges"), out.ExcludeIPRanges, `or leave it empty`)...)
	return out, errs
}

func checkCIDRs(path *field.Path, list, alternative string) field.ErrorList {
	var errs field.ErrorList
	if list == "" {
		return nil
	}
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		if _, _, err := net.ParseCIDR(c); err != nil {
			errs = append(errs, field.Invalid(path, list,
				fmt.Sprintf("%q is not a CIDR; use comma-separated CIDRs such as 10.0.0.0/8,172.16.0.0/12, %s", c, alternative)))
		}
	}
	return errs
}

func resolveGateways(in v1beta1.GatewaysSpec, eastWest bool, p *field.Path, errs field.ErrorList) ([]Gateway, field.ErrorList) {
	var out []Gateway
	if in.Enabled {
		ingress := in.Ingress
		if len(ingress) == 0 {
			ingress = []v1beta1.IngressGatewaySpec{{Enabled: true}}
		}
		seen := map[string]bool{}
		for i, g := range ingress {
			name := orDefault(g.Name, DefaultIngressGateway)
			if seen[name] {
				errs = append(errs, field.Duplicate(p.Child("ingress").Index(i).Child("name"), name))
				continue
			}
			seen[name] = true
			if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
				errs = append(errs, field.Invalid(p.Child("ingress").Index(i).Child("name"), name, strings.Join(msgs, "; ")))
				continue
			}
			errs = append(errs, checkServiceType(p.Child("ingress").Index(i).Child("serviceType"), g.ServiceType)...)
			if g.K8sIngress != nil && g.K8sIngress.IngressClass != "" {
				for _, msg := range validation.IsDNS1123Subdomain(g.K8sIngress.IngressClass) {
					errs = append(errs, field.Invalid(p.Child("ingress").Index(i).Child("k8sIngress", "ingressClass"), g.K8sIngress.IngressClass, msg))
				}
			}
			if name == EastWestGatewayName {
				errs = append(errs, field.Invalid(p.Child("ingress").Index(i).Child("name"), name,
					"this name is reserved for the east-west gateway; choose another"))
				continue
			}
			errs = append(errs, checkReplicas(p.Child("ingress").Index(i).Child("replicaCount"), g.ReplicaCount, 0)...)
			if !g.Enabled {
				continue
			}
			gw := Gateway{
				Name:        name,
				Kind:        IngressGateway,
				ServiceType: serviceTypeOr(g.ServiceType),
				Replicas:    int32Or(g.ReplicaCount, 1),
			}
			if g.K8sIngress != nil {
				gw.IngressClass = orDefault(g.K8sIngress.IngressClass, DefaultIngressClass)
			}
			out = append(out, gw)
		}
		classes := 0
		for _, g := range out {
			if g.IngressClass != "" {
				classes++
			}
		}
		if classes > 1 {
			errs = append(errs, field.Invalid(p.Child("ingress"), classes,
				"only one ingress gateway can serve Kubernetes Ingress (k8sIngress); remove k8sIngress from the others"))
		}
	}
	if eastWest {
		ew := Gateway{Name: EastWestGatewayName, Kind: EastWestGateway, ServiceType: corev1.ServiceTypeLoadBalancer, Replicas: 1}
		if in.EastWest != nil {
			errs = append(errs, checkReplicas(p.Child("eastWest", "replicaCount"), in.EastWest.ReplicaCount, 0)...)
			errs = append(errs, checkServiceType(p.Child("eastWest", "serviceType"), in.EastWest.ServiceType)...)
			ew.ServiceType = serviceTypeOr(in.EastWest.ServiceType)
			ew.Replicas = int32Or(in.EastWest.ReplicaCount, 1)
		}
		out = append(out, ew)
	}
	return out, errs
}

func resolveCA(in v1beta1.SecuritySpec, p *field.Path, errs field.ErrorList) (CA, field.ErrorList) {
	selfSigned := boolOr(in.SelfSigned, in.CASecretRef == nil && in.ExternalCA == nil)
	secret := ""
	if in.CASecretRef != nil {
		secret = in.CASecretRef.Name
	}
	var external *ExternalCA
	if in.ExternalCA != nil {
		external, errs = resolveExternalCA(in, p, errs)
		selfSigned = false
	}
	switch {
	case external != nil:
	case selfSigned && secret != "":
		errs = append(errs, field.Invalid(p.Child("caSecretRef"), secret,
			"selfSigned is true, so the operator generates the root; remove caSecretRef or set selfSigned: false"))
	case !selfSigned && secret == "" && in.ExternalCA == nil:
		errs = append(errs, field.Required(p.Child("caSecretRef"),
			"selfSigned is false, so the mesh needs your root CA: name a Secret holding tls.crt and tls.key, set externalCA to keep the root outside the clusters, or set selfSigned: true"))
	}
	var rootTTL, interTTL, renew time.Duration
	rootTTL, errs = parseDuration(in.RootCertTTL, DefaultRootTTL, p.Child("rootCertTTL"), errs)
	interTTL, errs = parseDuration(in.IntermediateCertTTL, DefaultIntermediateTTL, p.Child("intermediateCertTTL"), errs)
	renew, errs = parseDuration(in.RenewBefore, interTTL/3, p.Child("renewBefore"), errs)
	if selfSigned && interTTL > rootTTL {
		errs = append(errs, field.Invalid(p.Child("intermediateCertTTL"), in.IntermediateCertTTL,
			fmt.Sprintf("an intermediate cannot outlive its root (rootCertTTL %s); shorten it or lengthen rootCertTTL", rootTTL)))
	}
	if renew >= interTTL {
		errs = append(errs, field.Invalid(p.Child("renewBefore"), in.RenewBefore,
			fmt.Sprintf("must be shorter than intermediateCertTTL (%s), or the certificate is reissued forever", interTTL)))
	}
	return CA{
		SelfSigned:      selfSigned,
		SecretName:      secret,
		RootTTL:         metav1.Duration{Duration: rootTTL},
		IntermediateTTL: metav1.Duration{Duration: interTTL},
		RenewBefore:     metav1.Duration{Duration: renew},
		External:        external,
	}, errs
}

// resolveExternalCA checks spec.security.externalCA: the only way of
// bringing the root, a parsable bundle of CA certificates with no key, and
// none of the settings that only make sense when the operator issues.
func resolveExternalCA(in v1beta1.SecuritySpec, p *field.Path, errs field.ErrorList) (*ExternalCA, field.ErrorList) {
	ep := p.Child("externalCA")
	if in.SelfSigned != nil && *in.SelfSigned {
		errs = append(errs, field.Invalid(p.Child("selfSigned"), true,
			"externalCA keeps the root outside the clusters, so the operator generates none; remove selfSigned (or set it to false), or remove externalCA"))
	}
	if in.CASecretRef != nil {
		errs = append(errs, field.Invalid(p.Child("caSecretRef"), in.CASecretRef.Name,
			"externalCA keeps the root key outside the clusters, while caSecretRef puts it in a Secret; keep one of them"))
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"rootCertTTL", in.RootCertTTL != nil}, {"intermediateCertTTL", in.IntermediateCertTTL != nil}, {"renewBefore", in.RenewBefore != nil}} {
		if f.set {
			errs = append(errs, field.Forbidden(p.Child(f.name),
				"with externalCA the operator issues no root and no intermediate, so it has no lifetime to set; choose it when you sign each cluster's intermediate (meshctl ca sign-intermediate --ttl), and set externalCA.warnBefore for the expiry warning"))
		}
	}
	ext := &ExternalCA{RootPEM: in.ExternalCA.RootCertificate}
	if strings.TrimSpace(ext.RootPEM) == "" {
		errs = append(errs, field.Required(ep.Child("rootCertificate"),
			"the mesh's root CA certificate, PEM (no key): e.g. the contents of root-cert.pem"))
	} else if _, err := ca.ParseRoots([]byte(ext.RootPEM)); err != nil {
		errs = append(errs, field.Invalid(ep.Child("rootCertificate"), "(PEM)",
			fmt.Sprintf("not a usable root CA certificate: %v; paste the PEM of your root certificate (-----BEGIN CERTIFICATE-----), no key", err)))
	}
	var warn time.Duration
	if in.ExternalCA.WarnBefore != nil {
		warn, errs = parseDuration(in.ExternalCA.WarnBefore, 0, ep.Child("warnBefore"), errs)
	}
	ext.WarnBefore = metav1.Duration{Duration: warn}
	return ext, errs
}

func parseDuration(in *v1beta1.Duration, def time.Duration, p *field.Path, errs field.ErrorList) (time.Duration, field.ErrorList) {
	if in == nil || *in == "" {
		return def, errs
	}
	d, err := time.ParseDuration(string(*in))
	if err != nil || d <= 0 {
		return def, append(errs, field.Invalid(p, *in, "use a positive duration such as 8760h or 90m"))
	}
	return d, errs
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func int32Or(i *int32, def int32) int32 {
	if i == nil {
		return def
	}
	return *i
}

func serviceTypeOr(t corev1.ServiceType) corev1.ServiceType {
	if t == "" {
		return corev1.ServiceTypeLoadBalancer
	}
	return t
}
