package health

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Read reads the Summary published in namespace and the Lease it names.
// The Summary is nil when none was published, the Lease nil when it does
// not exist; only other API errors are returned.
func Read(ctx context.Context, kube kubernetes.Interface, namespace string) (*Summary, *Lease, error) {
	cm, err := kube.CoreV1().ConfigMaps(namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the locality server's state, ConfigMap %s/%s: %w", namespace, ConfigMapName, err)
	}
	if _, ok := cm.Data[Key]; !ok {
		return nil, nil, nil // rendered by the operator, not yet written by the server
	}
	s, err := Decode(namespace, cm.Data)
	if err != nil {
		return nil, nil, err
	}
	if s.Lease == "" {
		return s, nil, nil
	}
	leaseNS, leaseName, ok := strings.Cut(s.Lease, "/")
	if !ok {
		return nil, nil, fmt.Errorf("ConfigMap %s/%s key %s: lease %q is not namespace/name; delete the ConfigMap and the locality server writes it again", namespace, ConfigMapName, Key, s.Lease)
	}
	l, err := kube.CoordinationV1().Leases(leaseNS).Get(ctx, leaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return s, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the locality server's Lease %s: %w", s.Lease, err)
	}
	out := &Lease{}
	if h := l.Spec.HolderIdentity; h != nil {
		out.Holder = *h
	}
	if r := l.Spec.RenewTime; r != nil {
		out.Renewed = r.Time
	}
	if d := l.Spec.LeaseDurationSeconds; d != nil {
		out.Duration = time.Duration(*d) * time.Second
	}
	return s, out, nil
}
