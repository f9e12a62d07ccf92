package tunnel

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// upstreamRecheck is how often, at most, a gate that saw its API server
// fail asks /readyz again.
const upstreamRecheck = 250 * time.Millisecond

// upstreamGate keeps the agent from forwarding to an API server that is
// starting. A kube-apiserver answers as soon as its port is open, before
// its authorizer has loaded RBAC: in that window it refuses the agent's
// impersonation with 403 (an admin client certificate, in system:masters,
// never saw it). A caller must not take such a 403 for its permissions, so
// once forwarding failed (the API server was unreachable) the gate answers
// 503 until the API server's /readyz, asked with the agent's credentials,
// says it is ready again.
type upstreamGate struct {
	client    *http.Client
	readyzURL string
	log       *slog.Logger

	mu        sync.Mutex
	down      bool
	lastCheck time.Time
	lastErr   error
}

// markDown records that forwarding to the API server failed.
func (g *upstreamGate) markDown(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.down {
		g.log.Warn("API server unreachable; requests wait for its /readyz", "error", err)
	}
	g.down, g.lastErr, g.lastCheck = true, err, time.Time{}
}

// up reports whether the gate lets requests through without asking /readyz.
func (g *upstreamGate) up() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.down
}

// ready returns nil when requests may be forwarded, and otherwise why not.
// A gate that is down asks /readyz again at most every upstreamRecheck.
func (g *upstreamGate) ready(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.down {
		return nil
	}
	if time.Since(g.lastCheck) < upstreamRecheck {
		return g.lastErr
	}
	g.lastCheck = time.Now()
	if err := g.checkReadyz(ctx); err != nil {
		g.lastErr = err
		return err
	}
	g.down, g.lastErr = false, nil
	g.log.Info("API server ready again; forwarding requests")
	return nil
}

func (g *upstreamGate) checkReadyz(ctx context.Context) error {
	// One caller giving up must not count as the API server's answer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.readyzURL, nil)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET /readyz: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /readyz: %s", resp.Status)
	}
	return nil
}
