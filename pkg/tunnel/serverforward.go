package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// forwardDirect sends a request that direct accepts (a bodyless GET or
// HEAD, no upgrade) to an agent of t's cluster and copies the answer to w:
// what the server's ReverseProxy does for it (the same rewrite, the same
// error answers, streaming answers flushed as they come), without the
// proxy's request clone and per-request bookkeeping (doc.go, "The data
// path, measured"). An answer of known length is flushed to the caller
// before forwardDirect returns, so that the audit line is not written on
// the caller's time. It reports whether the answer was cut short; the
// caller then aborts the response (http.ErrAbortHandler), as the proxy
// does, so that a truncated body is not taken for a whole one.
func (s *Server) forwardDirect(w http.ResponseWriter, r *http.Request, t *proxyTarget) (aborted bool) {
	ctx := context.WithValue(r.Context(), targetKey{}, t)
	h := r.Header.Clone()
	removeHopByHop(h)
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		h.Del(k)
	}
	setImpersonation(h, t.as)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // as the proxy: no Go default
	}
	out := (&http.Request{
		Method:     r.Method,
		URL:        &url.URL{Scheme: "http", Host: "agent." + t.cluster, Path: t.path, RawPath: t.rawPath, RawQuery: r.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
	}).WithContext(ctx)
	resp, err := s.transport.RoundTrip(out)
	if err != nil {
		s.proxyError(w, r.Context(), t, err)
		return false
	}
	defer resp.Body.Close()
	removeHopByHop(resp.Header)
	wh := w.Header()
	for k, v := range resp.Header {
		wh[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0
	rc := http.NewResponseController(w)
	if stream {
		// A watch's caller waits for the headers before any event comes.
		if rc.Flush() != nil {
			return true
		}
	}
	buf := proxyBuffers.Get()
	defer proxyBuffers.Put(buf)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return true
			}
			if stream {
				if rc.Flush() != nil {
					return true
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			if !stream {
				// One write, as finishRequest would; a chunked answer's
				// end is written by finishRequest, so it is not flushed
				// here (that would be a write of its own).
				_ = rc.Flush()
			}
			return false
		}
		if rerr != nil {
			return true
		}
	}
}

// proxyError answers a request that could not be forwarded to an agent.
func (s *Server) proxyError(w http.ResponseWriter, ctx context.Context, t *proxyTarget, err error) {
	if ctx.Err() != nil {
		// The caller went away; nobody reads an answer.
		w.WriteHeader(499)
		return
	}
	if errors.Is(err, errAgentBusy) {
		w.Header().Set("Retry-After", "1")
		writeStatus(w, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests,
			fmt.Sprintf("tunnel to cluster %q: every agent has as many requests open as it may (%v); retry later, or run more agent replicas", t.cluster, err))
		return
	}
	writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable,
		fmt.Sprintf("tunnel to cluster %q: %v", t.cluster, err))
}
