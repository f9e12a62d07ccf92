package check

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestEndpointsRoundTripThroughKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["primary"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"}
	kc.AuthInfos["primary"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["primary"] = &clientcmdapi.Context{Cluster: "primary", AuthInfo: "primary"}
	kc.CurrentContext = "primary"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	want := Endpoints{IstiodDebug: "http://127.0.0.1:1", TunnelMetrics: "http://127.0.0.1:2/metrics", LocalityDebug: "http://127.0.0.1:3"}
	if err := WriteEndpoints(path, want); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	loaded, err := clientcmd.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EndpointsFromKubeconfig(loaded, "")
	if err != nil || got != want {
		t.Fatalf("read back %+v, %v; want %+v\n%s", got, err, want, b)
	}
	if _, err := clientcmd.RESTConfigFromKubeConfig(b); err != nil {
		t.Errorf("the kubeconfig no longer loads: %v", err)
	}
	if got := (Endpoints{IstiodDebug: "x"}).Or(want); got.IstiodDebug != "x" || got.LocalityDebug != want.LocalityDebug {
		t.Errorf("Or: %+v", got)
	}
}
