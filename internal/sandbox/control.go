package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/meshfleet/meshfleet/pkg/check"
)

// SocketName is the control socket in the sandbox's directory. A Unix socket
// lives in the file system, so commands outside the sandbox's network
// namespace reach it.
const SocketName = "control.sock"

// Status is what `meshctl sandbox status` shows.
type Status struct {
	Dir      string          `json:"dir"`
	PID      int             `json:"pid"`
	Clusters []ClusterStatus `json:"clusters"`
	Istiod   string          `json:"istiod,omitempty"`
	Locality string          `json:"localityServer,omitempty"`
	// Endpoints are the components' addresses meshctl reaches (also in
	// the primary's kubeconfig).
	Endpoints check.Endpoints `json:"endpoints"`
	Zones     []Zone          `json:"zones,omitempty"`
	Traffic   []Traffic       `json:"traffic,omitempty"`
	// Totals count every call of each demo client since the start.
	Totals     []Totals    `json:"totals,omitempty"`
	Components []Component `json:"components,omitempty"`
	StartedAt  time.Time   `json:"startedAt"`
}

// ClusterStatus is one cluster of the sandbox.
type ClusterStatus struct {
	Name       string `json:"name"`
	URL        string `json:"url"`
	Kubeconfig string `json:"kubeconfig"`
}

// Status describes the running sandbox.
func (s *Sandbox) Status() Status {
	st := Status{Dir: s.Dir, PID: os.Getpid(), Locality: s.XDSAddr, Endpoints: s.Endpoints(), StartedAt: s.started}
	for _, c := range s.Clusters {
		st.Clusters = append(st.Clusters, ClusterStatus{Name: c.Name, URL: c.URL, Kubeconfig: c.Kubeconfig})
	}
	if s.Istiod != nil {
		st.Istiod = s.Istiod.GRPCAddr
	}
	if s.demo != nil {
		s.demo.mu.Lock()
		st.Zones = append(st.Zones, s.demo.zones...)
		s.demo.mu.Unlock()
		st.Traffic = s.demo.Traffic()
		st.Totals = s.demo.Totals()
	}
	st.Components = s.Components()
	return st
}

// SetZoneReady marks every demo endpoint of a zone (or region) ready or
// not, as a failed zone would look to Kubernetes.
func (s *Sandbox) SetZoneReady(ctx context.Context, zoneOrRegion string, ready bool) error {
	if s.demo == nil {
		return errors.New("the sandbox runs without the demo")
	}
	return s.demo.setReady(ctx, zoneOrRegion, ready)
}

// Serve answers control requests on the sandbox's socket until ctx ends or a
// client asks it to stop, which closes stop.
func (s *Sandbox) Serve(ctx context.Context, stop chan<- struct{}) error {
	path := filepath.Join(s.Dir, SocketName)
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Status())
	})
	zoneOp := func(ready bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := s.SetZoneReady(r.Context(), r.URL.Query().Get("zone"), ready); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		name, err := s.Kill(r.URL.Query().Get("component"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode([]string{name})
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		names, err := s.Restart(r.Context(), r.URL.Query().Get("component"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(names)
	})
	mux.HandleFunc("POST /fail-zone", zoneOp(false))
	mux.HandleFunc("POST /restore", zoneOp(true))
	var once bool
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		if !once {
			once = true
			close(stop)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Control talks to a running sandbox through its socket.
type Control struct {
	dir    string
	client *http.Client
}

// Connect returns a Control for the sandbox in dir.
func Connect(dir string) *Control {
	path := filepath.Join(dir, SocketName)
	// Restarting istiod or an API server waits until it is ready.
	return &Control{dir: dir, client: &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *Control) do(method, path string, query url.Values, out any) error {
	u := "http://sandbox" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("no sandbox is running in %s (%v); start one with meshctl sandbox up", c.dir, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("sandbox: %s", string(b))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Status reads the sandbox's status.
func (c *Control) Status() (*Status, error) {
	st := &Status{}
	return st, c.do(http.MethodGet, "/status", nil, st)
}

// FailZone marks every endpoint in a zone (or region) not ready.
func (c *Control) FailZone(zone string) error {
	return c.do(http.MethodPost, "/fail-zone", url.Values{"zone": {zone}}, nil)
}

// Kill kills a component of the sandbox (see Sandbox.Kill) and returns the
// name of the one it killed.
func (c *Control) Kill(component string) (string, error) {
	var names []string
	if err := c.do(http.MethodPost, "/kill", url.Values{"component": {component}}, &names); err != nil {
		return "", err
	}
	return names[0], nil
}

// Restart starts a component again (see Sandbox.Restart) and returns the
// names of the components started.
func (c *Control) Restart(component string) ([]string, error) {
	var names []string
	return names, c.do(http.MethodPost, "/restart", url.Values{"component": {component}}, &names)
}

// Restore marks a zone's (or region's) endpoints ready again.
func (c *Control) Restore(zone string) error {
	return c.do(http.MethodPost, "/restore", url.Values{"zone": {zone}}, nil)
}

// Down asks the sandbox to stop and waits until its socket is gone.
func (c *Control) Down(timeout time.Duration) error {
	if err := c.do(http.MethodPost, "/down", nil, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(c.dir, SocketName)); os.IsNotExist(err) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the sandbox in %s did not stop within %v", c.dir, timeout)
}
