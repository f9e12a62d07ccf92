package meshca

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/apply"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// ServerCertKeeper keeps the tunnel server's certificate for Hosts in
// Namespace/ServerTLSSecretName, issued from the tunnel CA and renewed a
// third of its lifetime before expiry; the tunnel server reloads it. It is
// a controller-runtime Runnable (run by the elected operator only).
type ServerCertKeeper struct {
	// Client reads and writes the primary.
	Client client.Client
	// Hosts are the DNS names and IP addresses agents and callers dial.
	Hosts []string
	// Resync is how often the Secret is checked even when nothing is due.
	Resync time.Duration
	// TTL is the lifetime of a new certificate; ServerCertTTL if zero.
	TTL time.Duration
	// FieldManager owns the keys the keeper writes.
	FieldManager string
	// Log receives what the keeper did.
	Log logr.Logger
	// Now is the clock; tests set it.
	Now func() time.Time
}

// Start keeps the certificate until ctx ends. Errors are logged and tried
// again after a short wait. Each Sync has a deadline well inside the
// renewal margin, so a call the API server never answers (a half-open
// connection, an overloaded server) costs one attempt, not the certificate.
func (k *ServerCertKeeper) Start(ctx context.Context) error {
	for {
		wait := k.Resync
		sctx, cancel := context.WithTimeout(ctx, k.syncTimeout())
		next, err := k.Sync(sctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			k.Log.Error(err, "keeping the tunnel server certificate", "secret", Namespace+"/"+ServerTLSSecretName)
			wait = min(10*time.Second, k.Resync)
		case next.Sub(k.now()) < wait:
			wait = max(next.Sub(k.now()), time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Sync writes the certificate when it is missing, wrong or due, and returns
// when it is next due.
func (k *ServerCertKeeper) Sync(ctx context.Context) (time.Time, error) {
	now := k.now()
	tunnelCA, _, err := TunnelCA(ctx, k.Client, now)
	if err != nil {
		return time.Time{}, err
	}
	key := client.ObjectKey{Namespace: Namespace, Name: ServerTLSSecretName}
	live := &corev1.Secret{}
	if err := k.Client.Get(ctx, key, live); err != nil && !apierrors.IsNotFound(err) {
		return time.Time{}, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	cert, err := ServerCertificate(live.Data, tunnelCA, k.Hosts, k.ttl(), now)
	if err != nil {
		return time.Time{}, err
	}
	if cert.Reissued != "" {
		// Only the keys the operator owns: client-ca.crt stays the installer's.
		s, err := TLSSecret(key.Namespace, key.Name, map[string]string{render.LabelManagedBy: render.ManagedByValue, LabelRole: "tunnel-server-tls"}, cert.Data)
		if err != nil {
			return time.Time{}, err
		}
		// No type: the installer may have created the Secret as Opaque
		// (its client-ca.crt), and a Secret's type cannot change.
		unstructured.RemoveNestedField(s.Object, "type")
		a := &apply.Applier{Client: k.Client, FieldManager: k.FieldManager}
		if _, err := a.Apply(ctx, []*unstructured.Unstructured{s}); err != nil {
			return time.Time{}, fmt.Errorf("writing the tunnel server certificate %s (%s): %w", key, cert.Reissued, err)
		}
		k.Log.Info("issued the tunnel server certificate", "secret", key.String(), "hosts", k.Hosts, "reason", cert.Reissued, "notAfter", cert.NotAfter)
	}
	RecordExpiry("", "tunnel-server", cert.NotAfter)
	return cert.RenewAt, nil
}

// syncTimeout bounds one Sync: a sixth of the certificate's lifetime (half
// of the third it is renewed before expiry), at most a minute.
func (k *ServerCertKeeper) syncTimeout() time.Duration {
	return min(k.ttl()/6, time.Minute)
}

func (k *ServerCertKeeper) ttl() time.Duration {
	if k.TTL == 0 {
		return ServerCertTTL
	}
	return k.TTL
}

func (k *ServerCertKeeper) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}
