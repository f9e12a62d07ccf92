package render

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshfleet/meshfleet/pkg/version"
)

// The tunnel server's objects, in the primary.
const (
	// TunnelServerNamespace holds the tunnel server, its certificate
	// (issued there from the tunnel CA, whose key never leaves it) and its
	// Lease.
	TunnelServerNamespace = "meshfleet-system"
	// TunnelServerName names its ServiceAccount, Deployment, RBAC and Lease.
	TunnelServerName = "meshfleet-tunnel-server"
	// TunnelServerTLSSecretName is the certificate the operator keeps
	// (tls.crt, tls.key, ca.crt = the tunnel CA; meshca.ServerCertKeeper).
	TunnelServerTLSSecretName = "meshfleet-tunnel-server-tls"
	// TunnelServiceName is where callers (istiod, the operator, the locality
	// server, Kiali) reach the clusters: https://<it>.<ns>.svc/clusters/<name>.
	TunnelServiceName = "meshfleet-tunnel"
	// TunnelAgentsServiceName is what agents dial from the remote clusters.
	TunnelAgentsServiceName = "meshfleet-tunnel-agents"
	// TunnelRoleLabel is the label the active tunnel server puts on its own
	// Pod (pkg/tunnel RoleLabel), which the Services select.
	TunnelRoleLabel = "meshfleet.io/tunnel-role"
	// Container ports of the tunnel server.
	TunnelServerAPIPort     = 8443
	TunnelServerAgentPort   = 8444
	TunnelServerMetricsPort = 9090

	// TunnelAgentName is the agent's Deployment (and service account) in
	// TunnelServerNamespace of each tunnelled cluster
	// (manifests/tunnel/agent.yaml); TunnelAgentContainer its container,
	// whose image the operator keeps at its own.
	TunnelAgentName      = "meshfleet-tunnel-agent"
	TunnelAgentContainer = "agent"

	tunnelServerReplicas = 2
	tunnelServerCertDir  = "/etc/meshfleet/tunnel"
)

// AnnotationReadyWhen on a Deployment of meshfleet's own components
// (ReadyWhenAvailable) makes the control plane Ready while all its replicas
// are available, old or new, rather than only once fully rolled out: an
// upgrade of the operator rolls them without the mesh leaving Ready.
const (
	AnnotationReadyWhen = "meshfleet.io/ready-when"
	ReadyWhenAvailable  = "available"
)

// TunnelServer is how the operator runs the tunnel server when the mesh
// uses the tunnel: not from the spec, from the operator's own settings.
type TunnelServer struct {
	// Image is meshfleet's image, the one the operator runs from.
	Image string `json:"image,omitempty"`
	// AgentServiceType exposes the agents' port to the remote clusters:
	// LoadBalancer (the default), NodePort or ClusterIP (behind an ingress
	// or a tunnel of the platform's own).
	AgentServiceType corev1.ServiceType `json:"agentServiceType,omitempty"`
}

// renderTunnelServer adds the tunnel server to the primary when the
// operator runs with the tunnel.
func renderTunnelServer(cp *ControlPlane, m *Manifest) error {
	if cp.Remote != nil || cp.TunnelServer == nil {
		return nil
	}
	return appendTyped(m, tunnelServerObjects(cp))
}

// appendTyped adds typed objects to m as unstructured ones, without the
// fields the API server sets.
func appendTyped(m *Manifest, objs []runtime.Object) error {
	for _, o := range objs {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return fmt.Errorf("converting %T: %w", o, err)
		}
		obj := objectFrom(u)
		m.Objects = append(m.Objects, obj)
	}
	return nil
}

// tunnelServerObjects is the tunnel server as the sandbox runs it: two
// replicas competing for a Lease. The holder is active and labels its own
// Pod meshfleet.io/tunnel-role=active (pkg/tunnel RoleLabel), which both
// Services select; the other stands by. Both are ready while healthy, so
// that a rolling update, a PodDisruptionBudget and a node drain work as for
// any Deployment (readiness that followed the Lease, as the standby's
// /readyz does, would never let a rollout or a drain move the active one,
// decision 29). The certificate Secret the operator keeps is mounted and
// re-read when it changes. RBAC: review callers' tokens, hold its Lease,
// label its own Pod, read the RemoteIstios whose agents it admits. The
// access policy is the server's default one for the control plane's
// namespace and the operator's (istiod, Kiali, the locality server, the
// operator).
func tunnelServerObjects(cp *ControlPlane) []runtime.Object {
	ns, name := TunnelServerNamespace, TunnelServerName
	ts := *cp.TunnelServer
	image := ts.Image
	if image == "" {
		image = version.Image()
	}
	svcType := ts.AgentServiceType
	if svcType == "" {
		svcType = corev1.ServiceTypeLoadBalancer
	}
	labels := map[string]string{"app": name}
	meta := func(kind, apiVersion, n, namespace string) (metav1.TypeMeta, metav1.ObjectMeta) {
		return metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}, metav1.ObjectMeta{Name: n, Namespace: namespace, Labels: labels}
	}
	const rbacAPI = "rbac.authorization.k8s.io/v1"

	sa := &corev1.ServiceAccount{}
	sa.TypeMeta, sa.ObjectMeta = meta("ServiceAccount", "v1", name, ns)
	bindSA := []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}

	// Authenticate callers' bearer tokens (for the tunnel's audience).
	cr := &rbacv1.ClusterRole{Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	}}
	cr.TypeMeta, cr.ObjectMeta = meta("ClusterRole", rbacAPI, name, "")
	crb := &rbacv1.ClusterRoleBinding{RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: bindSA}
	crb.TypeMeta, crb.ObjectMeta = meta("ClusterRoleBinding", rbacAPI, name, "")
	// Its Lease and its own Pod's role label, in its own namespace (Pod
	// names are random: the rule cannot name them).
	lease := &rbacv1.Role{Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}},
	}}
	lease.TypeMeta, lease.ObjectMeta = meta("Role", rbacAPI, name, ns)
	leaseRB := &rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: bindSA}
	leaseRB.TypeMeta, leaseRB.ObjectMeta = meta("RoleBinding", rbacAPI, name, ns)
	// Admit agents only of clusters with a RemoteIstio (in the control
	// plane's namespace), and close their sessions when it is deleted.
	reader := &rbacv1.Role{Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"meshfleet.io"}, Resources: []string{"remoteistios"}, Verbs: []string{"get", "list", "watch"}},
	}}
	reader.TypeMeta, reader.ObjectMeta = meta("Role", rbacAPI, name, cp.Namespace)
	readerRB := &rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: bindSA}
	readerRB.TypeMeta, readerRB.ObjectMeta = meta("RoleBinding", rbacAPI, name, cp.Namespace)

	args := []string{"tunnel", "server",
		fmt.Sprintf("--api-addr=:%d", TunnelServerAPIPort), fmt.Sprintf("--agent-addr=:%d", TunnelServerAgentPort),
		fmt.Sprintf("--metrics-addr=:%d", TunnelServerMetricsPort),
		"--tls-cert-file=" + tunnelServerCertDir + "/tls.crt", "--tls-key-file=" + tunnelServerCertDir + "/tls.key",
		"--agent-ca-file=" + tunnelServerCertDir + "/ca.crt",
		"--token-review=true",
		"--istio-namespace=" + cp.Namespace, "--meshfleet-namespace=" + TunnelServerNamespace,
		"--leader-elect=true", "--lease-namespace=" + ns, "--lease-name=" + name, "--pod-namespace=" + ns,
	}
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("api"), Scheme: corev1.URISchemeHTTPS}},
			PeriodSeconds: period, FailureThreshold: 3, TimeoutSeconds: 2}
	}
	// One new replica before an old one goes: the new one stands by, and
	// takes the Lease when the old active one stops.
	dep := componentDeployment(component{
		name: name, namespace: ns, labels: labels, replicas: tunnelServerReplicas, metricsPort: TunnelServerMetricsPort,
		cpuRequest: "100m", memoryRequest: "64Mi",
		container: corev1.Container{
			Name: "server", Image: image, Args: args,
			Ports: []corev1.ContainerPort{
				{Name: "api", ContainerPort: TunnelServerAPIPort}, {Name: "agents", ContainerPort: TunnelServerAgentPort},
				{Name: "metrics", ContainerPort: TunnelServerMetricsPort}},
			// Ready while healthy, active or not: the Services pick the
			// active one by its role label.
			ReadinessProbe: probe("/healthz", 2),
			LivenessProbe:  probe("/healthz", 10),
			// The certificate and the tunnel CA are re-read when the Secret
			// changes: a renewal needs no restart.
			VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: tunnelServerCertDir, ReadOnly: true}},
		},
		volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: TunnelServerTLSSecretName}}}},
	})
	active := map[string]string{"app": name, TunnelRoleLabel: "active"}
	api := &corev1.Service{Spec: corev1.ServiceSpec{Selector: active, Ports: []corev1.ServicePort{
		{Name: "https-api", Port: 443, TargetPort: intstr.FromString("api")}}}}
	api.TypeMeta, api.ObjectMeta = meta("Service", "v1", TunnelServiceName, ns)
	agents := &corev1.Service{Spec: corev1.ServiceSpec{Type: svcType, Selector: active, Ports: []corev1.ServicePort{
		{Name: "https-agents", Port: 443, TargetPort: intstr.FromString("agents")}}}}
	agents.TypeMeta, agents.ObjectMeta = meta("Service", "v1", TunnelAgentsServiceName, ns)
	// One replica may go at a time; the other takes the Lease.
	pdb := &policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{
		MinAvailable: ptrTo(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels}}}
	pdb.TypeMeta, pdb.ObjectMeta = meta("PodDisruptionBudget", "policy/v1", name, ns)
	return []runtime.Object{sa, cr, crb, lease, leaseRB, reader, readerRB, dep, pdb, api, agents}
}
