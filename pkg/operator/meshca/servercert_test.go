package meshca

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/meshfleet/meshfleet/tests/testenv"
)

// A write the API server never answers must cost the keeper one attempt,
// not the certificate: the next attempt issues it.
func TestServerCertKeeperOutlivesAHungWrite(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var applies atomic.Int32
	c := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(ctx context.Context, c client.WithWatch, o runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if applies.Add(1) == 1 {
				<-ctx.Done() // the first write hangs until its caller gives up
				return ctx.Err()
			}
			return c.Apply(ctx, o, opts...)
		},
	}).Build()
	k := &ServerCertKeeper{Client: c, Hosts: []string{"127.0.0.1"}, Resync: 100 * time.Millisecond, TTL: 6 * time.Second,
		FieldManager: "test", Log: logr.Discard()}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	}()
	key := client.ObjectKey{Namespace: Namespace, Name: ServerTLSSecretName}
	testenv.Eventually(t, time.Minute, "a certificate in "+key.String()+" after the first write hung", func() error {
		s := &corev1.Secret{}
		if err := c.Get(ctx, key, s); err != nil {
			return fmt.Errorf("%w (%d writes tried)", err, applies.Load())
		}
		if len(s.Data[corev1.TLSCertKey]) == 0 {
			return fmt.Errorf("no %s yet (%d writes tried)", corev1.TLSCertKey, applies.Load())
		}
		return nil
	})
	if n := applies.Load(); n < 2 {
		t.Fatalf("%d writes, want the hung one and a second", n)
	}
}
