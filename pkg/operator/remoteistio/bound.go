package remoteistio

import (
	"context"
	"io"
	"net/http"
)

// boundTo ends every request of a remote client when ctx, the reconcile's
// context, ends, including the requests made with no context of the
// caller's: controller-runtime's REST mapper discovers the remote's API
// groups on the client's first use of each, with nothing but the
// connection's client timeout (15 s a request) to stop it. Against a remote
// that hangs, those requests held a worker well past the cancellation of a
// stopping manager or a lost lease, and past the manager's shutdown grace.
type boundTo struct {
	ctx  context.Context
	next http.RoundTripper
}

func (t boundTo) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	stop := context.AfterFunc(t.ctx, func() { cancel(context.Cause(t.ctx)) })
	release := func() {
		stop()
		cancel(nil)
	}
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		release()
		return resp, err
	}
	// A response's body (a watch's among them) is read after RoundTrip
	// returns: the request ends when the body is closed.
	resp.Body = &releasing{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// releasing calls release once its body is closed.
type releasing struct {
	io.ReadCloser
	release func()
}

func (b *releasing) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}
