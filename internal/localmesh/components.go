package localmesh

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Component names. Components that exist once per cluster or per replica
// are named <kind>/<cluster> or <kind>/<cluster>/<n>.
const (
	ComponentLocality     = "locality"
	ComponentIstiod       = "istiod"
	ComponentOperator     = "operator"
	ComponentTunnelServer = "tunnel-server"
	ComponentAgent        = "agent"
	ComponentAPIServer    = "apiserver"
	ComponentEtcd         = "etcd"
)

// Component is one process (or in-process server) of the mesh, as
// `meshctl sandbox status` lists it.
type Component struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	// Detail says more: an address, "active" or "standby".
	Detail string `json:"detail,omitempty"`
}

// component is the mesh's handle on one component: how to kill it (as a
// crash would) and start it again.
type component struct {
	name   string
	kill   func() error
	start  func(ctx context.Context) error
	detail func() string
	// active reports, for replicated components, the replica that serves.
	active func() bool
}

// components is the mesh's list of components and whether each runs.
type components struct {
	// op serializes kills and restarts; mu guards running.
	op      sync.Mutex
	mu      sync.Mutex
	list    []*component
	running map[string]bool
}

func (cs *components) add(c *component) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.running == nil {
		cs.running = map[string]bool{}
	}
	cs.list = append(cs.list, c)
	cs.running[c.name] = true
}

func (cs *components) isRunning(name string) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.running[name]
}

func (cs *components) setRunning(name string, r bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.running[name] = r
}

// status lists every component in the order they were started.
func (cs *components) status() []Component {
	cs.mu.Lock()
	list := append([]*component(nil), cs.list...)
	running := map[string]bool{}
	for k, v := range cs.running {
		running[k] = v
	}
	cs.mu.Unlock()
	out := make([]Component, 0, len(list))
	for _, c := range list {
		st := Component{Name: c.name, Running: running[c.name]}
		if c.detail != nil {
			st.Detail = c.detail()
		}
		out = append(out, st)
	}
	return out
}

func (cs *components) names() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var n []string
	for _, c := range cs.list {
		n = append(n, c.name)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// matching returns the components that name stands for: the component of
// that name, or every component under name/ (agent/remote-1 stands for that
// cluster's agents, tunnel-server for every server).
func (cs *components) matching(name string) []*component {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []*component
	for _, c := range cs.list {
		if c.name == name || strings.HasPrefix(c.name, name+"/") {
			out = append(out, c)
		}
	}
	return out
}

// pickToKill chooses the one running component name stands for: the
// active replica if there is one (the active tunnel server), else the first
// running one. An agent is chosen only from a cluster that keeps another
// running agent, unless name picks a single agent.
func (cs *components) pickToKill(name string) (*component, error) {
	var running []*component
	for _, c := range cs.matching(name) {
		if cs.isRunning(c.name) {
			running = append(running, c)
		}
	}
	if len(running) == 0 {
		if len(cs.matching(name)) == 0 {
			return nil, fmt.Errorf("no component %q in the mesh (components: %s)", name, cs.names())
		}
		return nil, fmt.Errorf("component %q is not running; start it with restart %s", name, name)
	}
	for _, c := range running {
		if c.active != nil && c.active() {
			return c, nil
		}
	}
	return running[0], nil
}

// Kill stops one component as a crash would: name is a component's name or
// stands for a group (tunnel-server: the active server; agent/<cluster>: one
// of that cluster's agents). It returns the name of the component killed.
func (m *Mesh) Kill(name string) (string, error) {
	cs := &m.comps
	cs.op.Lock()
	defer cs.op.Unlock()
	c, err := cs.pickToKill(name)
	if err != nil {
		return "", err
	}
	if err := c.kill(); err != nil {
		return "", fmt.Errorf("kill %s: %w", c.name, err)
	}
	cs.setRunning(c.name, false)
	return c.name, nil
}

// Restart starts again every stopped component that name stands for; if
// none is stopped, it kills and starts the one Kill would pick. It returns
// the names of the components started. An error (istiod that exits at
// start, an API server that does not become ready) leaves the component
// marked stopped.
func (m *Mesh) Restart(ctx context.Context, name string) ([]string, error) {
	cs := &m.comps
	cs.op.Lock()
	defer cs.op.Unlock()
	var stopped []*component
	for _, c := range cs.matching(name) {
		if !cs.isRunning(c.name) {
			stopped = append(stopped, c)
		}
	}
	if len(stopped) == 0 {
		c, err := cs.pickToKill(name)
		if err != nil {
			return nil, err
		}
		if err := c.kill(); err != nil {
			return nil, fmt.Errorf("kill %s: %w", c.name, err)
		}
		cs.setRunning(c.name, false)
		stopped = []*component{c}
	}
	var started []string
	for _, c := range stopped {
		if err := c.start(ctx); err != nil {
			return started, fmt.Errorf("restart %s: %w", c.name, err)
		}
		cs.setRunning(c.name, true)
		started = append(started, c.name)
	}
	return started, nil
}

// Components lists the mesh's components and whether each runs.
func (m *Mesh) Components() []Component { return m.comps.status() }

// inproc is a component that runs in this process (the
// operator, the locality server, tunnel servers and agents): killing it
// cancels its context and waits until it has returned.
type inproc struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// run starts f in a goroutine with a context that stop cancels.
func (p *inproc) run(f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p.mu.Lock()
	p.cancel, p.done = cancel, done
	p.mu.Unlock()
	go func() { f(ctx); close(done) }()
}

// stop cancels the running f and waits for it; it does nothing if f is not
// running.
func (p *inproc) stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
