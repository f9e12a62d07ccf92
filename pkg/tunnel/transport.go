package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// clusterTransport sends a request to an agent of its cluster: the one with
// the fewest requests in flight. When a stream to that agent cannot be
// opened, nothing of the request has been sent, so it tries the next agent.
type clusterTransport struct {
	agents *registry
}

func (ct *clusterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t := targetFrom(req.Context())
	if t == nil {
		return nil, errors.New("tunnel: request without a target cluster")
	}
	// http.Transport closes the body when it fails; keep it open for a
	// retry on another agent.
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = io.NopCloser(req.Body)
	}
	var tried []*agentSession
	var lastErr error
	for {
		sess := ct.agents.pick(t.cluster, tried, longRunning(req))
		if sess == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, fmt.Errorf("no agent of cluster %q is connected", t.cluster)
		}
		tried = append(tried, sess)
		t.agent = sess
		sess.inflight.Add(1)
		resp, err := sess.roundTrip(req)
		if err != nil {
			sess.inflight.Add(-1)
			if errors.Is(err, errAgentGone) || errors.Is(err, errAgentBusy) {
				lastErr = err
				continue
			}
			return nil, err
		}
		sess.served.Add(1)
		resp.Body = trackBody(resp.Body, func() { sess.inflight.Add(-1) })
		return resp, nil
	}
}

// trackBody calls done once when body is closed. It keeps an upgraded
// response's body writable, as httputil.ReverseProxy requires.
func trackBody(body io.ReadCloser, done func()) io.ReadCloser {
	tb := &trackedBody{ReadCloser: body, done: done}
	if w, ok := body.(io.Writer); ok {
		return &trackedRWBody{trackedBody: tb, w: w}
	}
	return tb
}

type trackedBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

type trackedRWBody struct {
	*trackedBody
	w io.Writer
}

func (b *trackedRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }
