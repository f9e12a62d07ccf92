package remoteistio

import (
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// unsentRetryWindow is how long a request through the tunnel is retried
// while it cannot even be sent: the tunnel Service has no endpoint for the
// moment of a Lease hand-over (the active server stopping, the standby
// taking over within its retry period), so connections are refused.
const unsentRetryWindow = 5 * time.Second

// retryUnsent retries a request, whatever its verb, when it failed before
// its headers were written (connection refused or reset, TLS handshake cut):
// nothing reached the server, so sending it again cannot apply it twice.
// client-go retries such failures for GETs only; the operator's writes
// through the tunnel need the same during a hand-over.
type retryUnsent struct {
	next   http.RoundTripper
	window time.Duration
}

func (t retryUnsent) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline := time.Now().Add(t.window)
	delay := 100 * time.Millisecond
	for {
		var wrote atomic.Bool
		traced := req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteHeaders: func() { wrote.Store(true) },
		}))
		resp, err := t.next.RoundTrip(traced)
		if err == nil || wrote.Load() || req.Context().Err() != nil || time.Now().Add(delay).After(deadline) {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, err
			}
			body, berr := req.GetBody()
			if berr != nil {
				return resp, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		timer := time.NewTimer(delay)
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		case <-timer.C:
		}
		delay = min(2*delay, time.Second)
	}
}
