package render

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// component describes one of meshfleet's own workloads (the locality
// server, the tunnel server): what differs between them. componentDeployment
// turns it into the Deployment they share the shape of.
type component struct {
	name, namespace string
	labels          map[string]string
	replicas        int32
	metricsPort     int32
	container       corev1.Container
	volumes         []corev1.Volume
	cpuRequest      string
	memoryRequest   string
}

// componentDeployment is a meshfleet workload's Deployment: its own service
// account, non-root with the runtime's seccomp profile, a read-only root
// filesystem and no capabilities, replicas spread over nodes and zones, a
// rolling update that brings a new replica up before an old one goes, a
// memory limit, Prometheus scraping, no sidecar, and POD_NAME in the
// environment. Its Ready follows availability (decision 31): its version is
// the operator's, so an operator upgrade rolls it without the control plane
// leaving Ready.
func componentDeployment(c component) *appsv1.Deployment {
	spread := func(key string) corev1.TopologySpreadConstraint {
		return corev1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: c.labels}}
	}
	ctr := c.container
	ctr.Env = append([]corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}, ctr.Env...)
	ctr.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(c.cpuRequest), corev1.ResourceMemory: resource.MustParse(c.memoryRequest)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	ctr.SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	replicas := c.replicas
	dep := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{
		Replicas: &replicas,
		Selector: &metav1.LabelSelector{MatchLabels: c.labels},
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: ptrTo(intstr.FromInt32(0)), MaxSurge: ptrTo(intstr.FromInt32(1))}},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: c.labels, Annotations: map[string]string{
				"prometheus.io/scrape": "true", "prometheus.io/port": fmt.Sprint(c.metricsPort), "sidecar.istio.io/inject": "false"}},
			Spec: corev1.PodSpec{
				ServiceAccountName:        c.name,
				SecurityContext:           &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				TopologySpreadConstraints: []corev1.TopologySpreadConstraint{spread("kubernetes.io/hostname"), spread("topology.kubernetes.io/zone")},
				Containers:                []corev1.Container{ctr},
				Volumes:                   c.volumes,
			},
		},
	}}
	dep.TypeMeta = metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"}
	dep.ObjectMeta = metav1.ObjectMeta{Name: c.name, Namespace: c.namespace, Labels: c.labels,
		Annotations: map[string]string{AnnotationReadyWhen: ReadyWhenAvailable}}
	return dep
}
