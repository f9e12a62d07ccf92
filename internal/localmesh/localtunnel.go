package localmesh

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

// LocalTunnel is the single tunnel server of a mesh without HATunnel, and
// one agent per tunnelled remote.
type LocalTunnel struct {
	*tunnel.Local
	// CA is the tunnel CA (the operator's, in meshfleet-system).
	CA *ca.KeyPair
	// LogPath holds the server's and agents' JSON logs (its audit lines).
	LogPath string
	// IstiodTokenFile holds istiod's token for the tunnel's audience, where
	// the remote secrets say istiod finds it.
	IstiodTokenFile string
	// OperatorTokenFile holds the operator's token for the tunnel's audience.
	OperatorTokenFile string
	agents            map[string]func()
}

// StopAgent stops the tunnel agent of remote.
func (tn *LocalTunnel) StopAgent(remote string) {
	if stop := tn.agents[remote]; stop != nil {
		stop()
	}
}

// startLocalTunnel runs the tunnel server (callers: client certificates of
// the primary's CA or tokens the primary issued for the tunnel's audience;
// agents: of clusters with a RemoteIstio) and one agent per tunnelled
// remote, and writes the operator's token. The agents start now; the
// server accepts each once its cluster has a RemoteIstio (Join waits).
func (m *Mesh) startLocalTunnel(ctx context.Context, tunnelCA *ca.KeyPair) (*LocalTunnel, error) {
	primary := m.Primary()
	tn := &LocalTunnel{CA: tunnelCA, LogPath: filepath.Join(m.Dir, "tunnel.log"),
		IstiodTokenFile: m.istiodTokenFile(), OperatorTokenFile: m.operatorTokenFile(), agents: map[string]func(){}}
	f, err := os.OpenFile(tn.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if tn.Local, err = tunnel.StartLocal(tunnel.LocalOptions{Root: tunnelCA, ClientCAPEM: primary.CACertPEM, Primary: primary.Config,
		Logger: slog.New(slog.NewJSONHandler(f, nil))}); err != nil {
		_ = f.Close()
		return nil, err
	}
	m.stops = append(m.stops, func() { tn.Stop(); _ = f.Close() })
	for _, rc := range m.Clusters[1:] {
		if slices.Contains(m.Options.DirectClusters, rc.Name) {
			continue
		}
		if tn.agents[rc.Name], err = tn.StartAgent(rc.Name, rc.Config); err != nil {
			return nil, fmt.Errorf("agent of %s: %w", rc.Name, err)
		}
	}
	// The operator presents its service account's token for the tunnel's
	// audience, as projected into its pod.
	if err := tunnel.WriteServiceAccountToken(ctx, primary.Config, tunnel.DefaultMeshfleetNamespace, "meshfleet-operator", tn.OperatorTokenFile, tokenTTL); err != nil {
		return nil, err
	}
	return tn, nil
}
