package render

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/version"
)

// The locality server's objects.
const (
	// LocalityServerName names its ServiceAccount, Deployment, Service,
	// PodDisruptionBudget, Role and Lease in the control plane's namespace.
	LocalityServerName = "meshfleet-locality"
	// LocalityServerPort serves /debug/locality, /metrics, /healthz, /readyz.
	LocalityServerPort = 9092
	// localityTunnelCA is the ConfigMap (key ca.crt) and mount of the CA
	// that verifies the tunnel server.
	localityTunnelCA     = "meshfleet-locality-tunnel-ca"
	localityTunnelCADir  = "/etc/meshfleet/tunnel-ca"
	localityReplicas     = 2
	localityClusterRoleF = "meshfleet-locality-%s"
)

// LocalityServer is how the operator runs the locality server (meshfleet
// locality) when spec.localityLB.enabled: not from the spec, from the
// operator's own settings.
type LocalityServer struct {
	// Image is meshfleet's image, the one the operator runs from.
	Image string `json:"image,omitempty"`
	// TunnelURL and TunnelCA reach remotes without a kubeconfig Secret
	// through the tunnel server, as the operator does.
	TunnelURL string `json:"tunnelURL,omitempty"`
	TunnelCA  []byte `json:"tunnelCA,omitempty"`
}

// renderLocalityServer adds the locality server to the primary when
// locality routing is on: two replicas (one writes, by a Lease), a
// PodDisruptionBudget, probes, requests, spread over nodes and zones, and
// RBAC to read the topology and write DestinationRules in its namespace
// only.
func renderLocalityServer(cp *ControlPlane, m *Manifest) error {
	if cp.Remote != nil || !cp.LocalityLB.Enabled {
		return nil
	}
	objs, err := localityServerObjects(cp)
	if err != nil {
		return err
	}
	return appendTyped(m, objs)
}

// objectFrom is a converted typed object without the fields the API server
// sets.
func objectFrom(u map[string]any) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{Object: u}
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(obj.Object, "spec", "template", "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(obj.Object, "status")
	return obj
}

func localityServerObjects(cp *ControlPlane) ([]runtime.Object, error) {
	ns, name := cp.Namespace, LocalityServerName
	ls := LocalityServer{}
	if cp.LocalityServer != nil {
		ls = *cp.LocalityServer
	}
	image := ls.Image
	if image == "" {
		image = version.Image()
	}
	labels := map[string]string{"app": name}
	meta := func(kind, apiVersion, n, namespace string) (metav1.TypeMeta, metav1.ObjectMeta) {
		return metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}, metav1.ObjectMeta{Name: n, Namespace: namespace, Labels: labels}
	}
	clusterRole := fmt.Sprintf(localityClusterRoleF, ns)
	read := []string{"get", "list", "watch"}

	sa := &corev1.ServiceAccount{}
	sa.TypeMeta, sa.ObjectMeta = meta("ServiceAccount", "v1", name, ns)

	cr := &rbacv1.ClusterRole{Rules: []rbacv1.PolicyRule{
		// namespaces: istiod's namespace-level traffic-distribution annotation.
		{APIGroups: []string{""}, Resources: []string{"nodes", "services", "pods", "namespaces"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		// destinationrules: users' rules are read everywhere; a rule that
		// istiod merges into a user's rule with subsets only (Flagger's,
		// meshctl canary's) is written in that rule's namespace (decision 46).
		{APIGroups: []string{"networking.istio.io"}, Resources: []string{"destinationrules"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	}}
	cr.TypeMeta, cr.ObjectMeta = meta("ClusterRole", "rbac.authorization.k8s.io/v1", clusterRole, "")
	crb := &rbacv1.ClusterRoleBinding{
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}
	crb.TypeMeta, crb.ObjectMeta = meta("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", clusterRole, "")
	// Writes only in its own namespace: its DestinationRules and its Lease;
	// reads the mesh (Istio, RemoteIstio) and, by name only, the
	// RemoteIstios' kubeconfig Secrets (no other Secret of the namespace).
	role := &rbacv1.Role{Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"networking.istio.io"}, Resources: []string{"destinationrules"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{"meshfleet.io"}, Resources: []string{"istios", "remoteistios"}, Verbs: read},
		// Its health summary, which meshctl status reads: only that
		// ConfigMap, which is rendered here so that no create is needed.
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update", "patch"}, ResourceNames: []string{health.ConfigMapName}},
	}}
	var secrets []string
	for _, m := range cp.Members {
		if m.KubeconfigSecret != "" && !slices.Contains(secrets, m.KubeconfigSecret) {
			secrets = append(secrets, m.KubeconfigSecret)
		}
	}
	if len(secrets) > 0 { // an empty resourceNames would mean every Secret
		slices.Sort(secrets)
		role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: secrets})
	}
	role.TypeMeta, role.ObjectMeta = meta("Role", "rbac.authorization.k8s.io/v1", name, ns)
	rb := &rbacv1.RoleBinding{
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}
	rb.TypeMeta, rb.ObjectMeta = meta("RoleBinding", "rbac.authorization.k8s.io/v1", name, ns)

	args := []string{"locality", "--in-cluster", "--namespace=" + ns, "--istio=" + cp.Owner.Name,
		"--rules-namespace=" + ns, "--lease-name=" + name, fmt.Sprintf("--debug-addr=:%d", LocalityServerPort)}
	// The summary's ConfigMap, empty: the locality server's writer owns its
	// data (server-side apply, its own field manager), the operator only
	// the object, so neither undoes the other.
	status := &corev1.ConfigMap{}
	status.TypeMeta, status.ObjectMeta = meta("ConfigMap", "v1", health.ConfigMapName, ns)
	objs := []runtime.Object{status}
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	if ls.TunnelURL != "" {
		cm := &corev1.ConfigMap{Data: map[string]string{"ca.crt": string(ls.TunnelCA)}}
		cm.TypeMeta, cm.ObjectMeta = meta("ConfigMap", "v1", localityTunnelCA, ns)
		objs = append(objs, cm)
		args = append(args, "--tunnel-url="+ls.TunnelURL, "--tunnel-ca-file="+localityTunnelCADir+"/ca.crt")
		volumes = append(volumes, corev1.Volume{Name: "tunnel-ca", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: localityTunnelCA}}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "tunnel-ca", MountPath: localityTunnelCADir, ReadOnly: true})
		// The tunnel accepts only tokens for its own audience.
		args = append(args, "--tunnel-token-file="+TunnelTokenPath)
		volumes = append(volumes, corev1.Volume{Name: tunnelTokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TunnelTokenAudience, ExpirationSeconds: ptrTo(tunnelTokenTTL), Path: "token"}}}}}})
		mounts = append(mounts, corev1.VolumeMount{Name: tunnelTokenVolume, MountPath: tunnelTokenDir, ReadOnly: true})
	}
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http-debug")}},
			PeriodSeconds: period, FailureThreshold: 3, TimeoutSeconds: 2}
	}
	dep := componentDeployment(component{
		name: name, namespace: ns, labels: labels, replicas: localityReplicas, metricsPort: LocalityServerPort,
		cpuRequest: "50m", memoryRequest: "128Mi",
		container: corev1.Container{
			Name: "locality", Image: image, Args: args,
			Ports: []corev1.ContainerPort{{Name: "http-debug", ContainerPort: LocalityServerPort}},
			// Both answer from the start: an unreachable member cluster is
			// a metric, not a restart.
			ReadinessProbe: probe("/readyz", 5),
			LivenessProbe:  probe("/healthz", 10),
			VolumeMounts:   mounts,
		},
		volumes: volumes,
	})
	pdb := &policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{
		MinAvailable: ptrTo(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels}}}
	pdb.TypeMeta, pdb.ObjectMeta = meta("PodDisruptionBudget", "policy/v1", name, ns)
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
		{Name: "http-debug", Port: LocalityServerPort, TargetPort: intstr.FromString("http-debug")}}}}
	svc.TypeMeta, svc.ObjectMeta = meta("Service", "v1", name, ns)
	return append(objs, sa, cr, crb, role, rb, dep, pdb, svc), nil
}

func ptrTo[T any](v T) *T { return &v }
