package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// handshakeTimeout bounds dialing, the TLS handshake and the Upgrade.
const handshakeTimeout = 15 * time.Second

// dialServer connects to a tunnel server's agent URL, authenticates with the
// client certificate in tlsConfig and upgrades the connection to the tunnel
// protocol. The returned connection is ready for a yamux session.
func dialServer(ctx context.Context, server string, tlsConfig *tls.Config, cluster, id string) (net.Conn, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("tunnel server URL %q: %w", server, err)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	cfg := tlsConfig.Clone()
	cfg.ServerName = u.Hostname()
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 30 * time.Second}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to tunnel server %s: %w", server, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	req := &http.Request{
		Method: http.MethodGet,
		URL:    &url.URL{Path: strings.TrimSuffix(u.Path, "/") + ConnectPath},
		Host:   u.Host,
		Header: http.Header{
			"Connection":  {"Upgrade"},
			"Upgrade":     {upgradeProtocol},
			headerCluster: {cluster},
			headerAgentID: {id},
			"User-Agent":  {"meshfleet-tunnel-agent"},
		},
	}
	br := bufio.NewReader(conn)
	resp, err := roundTripOnce(conn, br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("upgrade to the tunnel protocol at %s: %w", server, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, &RejectedError{Server: server, Code: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
	}
	_ = conn.SetDeadline(time.Time{})
	return withBuffered(conn, br), nil
}

func roundTripOnce(conn net.Conn, br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	return http.ReadResponse(br, req)
}
