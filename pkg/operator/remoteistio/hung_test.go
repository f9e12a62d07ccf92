package remoteistio

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// hungRemote is a remote API server that takes connections and answers
// some paths, and holds every other request until the caller gives up on
// it: a cluster whose API server or network path hangs.
func hungRemote(t *testing.T, answers map[string]string) (srv *httptest.Server, held <-chan string) {
	t.Helper()
	ch := make(chan string, 16)
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if body, ok := answers[r.URL.Path]; ok {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
			return
		}
		select {
		case ch <- r.URL.Path:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// kubeconfigReconciler is a Reconciler whose RemoteIstio r1 reaches srv
// through a kubeconfig Secret.
func kubeconfigReconciler(t *testing.T, srv *httptest.Server) (*Reconciler, *v1beta1.RemoteIstio) {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["r1"] = &clientcmdapi.Cluster{Server: srv.URL,
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}
	kc.AuthInfos["r1"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["r1"] = &clientcmdapi.Context{Cluster: "r1", AuthInfo: "r1"}
	kc.CurrentContext = "r1"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "r1-kubeconfig"},
		Data: map[string][]byte{v1beta1.KubeconfigSecretKey: data}}
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "r1"},
		Spec: v1beta1.RemoteIstioSpec{KubeconfigSecretRef: &corev1.LocalObjectReference{Name: secret.Name}}}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(secret).Build()
	return &Reconciler{APIReader: reader, Scheme: scheme}, ri
}

// TestConnectEndsWithTheReconcile: a remote API server that hangs holds a
// worker only as long as the reconcile's context lives. When the manager
// stops (or loses its lease) it cancels that context and waits a bounded
// grace for its workers; a request still bound only by the connection's
// 15 s client timeout outlives it. Both of connect's requests that took no
// context are held in turn: the server version, and the API discovery of
// the client's REST mapper, which controller-runtime does without one.
func TestConnectEndsWithTheReconcile(t *testing.T) {
	for _, c := range []struct {
		name    string
		answers map[string]string
	}{
		{"server version", nil},
		{"API discovery", map[string]string{"/version": `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, held := hungRemote(t, c.answers)
			r, ri := kubeconfigReconciler(t, srv)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				msg string
				err error
			}
			done := make(chan result, 1)
			go func() {
				_, out := r.connect(ctx, ri, "r1")
				done <- result{out.Message, out.Err}
			}()
			select {
			case path := <-held:
				t.Logf("the remote holds %s; cancelling the reconcile", path)
			case res := <-done:
				t.Fatalf("connect returned before the remote held a request: %q", res.msg)
			case <-time.After(time.Minute):
				t.Fatal("the remote saw no request in a minute")
			}
			cancel()
			select {
			case res := <-done:
				// A request the cancel did not reach ends on the client's own
				// timeout instead, with that in its error.
				if !strings.Contains(res.msg, context.Canceled.Error()) && !errors.Is(res.err, context.Canceled) {
					t.Fatalf("connect ended with %q, not with the reconcile's cancellation: the request outlived its reconcile", res.msg)
				}
			case <-time.After(time.Minute):
				t.Fatal("connect did not return a minute after its reconcile was cancelled")
			}
		})
	}
}

// TestBoundToKeepsTheBodyUntilTheReconcileEnds: a response outlives the
// RoundTrip that returned it (a watch's body is read for as long as it
// lasts) and is cut when the reconcile's context ends.
func TestBoundToKeepsTheBodyUntilTheReconcileEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("event\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hc := &http.Client{Transport: boundTo{ctx: ctx, next: http.DefaultTransport}}
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "event\n" {
		t.Fatalf("first read after RoundTrip: %q, %v; want the first event", buf, err)
	}
	cancel()
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(buf)
		read <- err
	}()
	select {
	case err := <-read:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after the reconcile ended: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the body was still open a minute after the reconcile ended")
	}
}
