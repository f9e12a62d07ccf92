//go:build e2e

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/google/pprof/profile"
)

// profileWindow is the length, in seconds, of each CPU profile istiodCPU
// asks istiod for: stopping waits for the current one to end.
const profileWindow = 5

// istiodCPU records istiod's CPU profile while it runs: back-to-back
// windows of its /debug/pprof/profile (on --httpAddr, which istiod serves
// with its default --profile=true, unauthenticated from localhost), merged
// when it stops. (pilot-discovery's ControlZ port serves no pprof: its
// options leave EnablePprof off.)
type istiodCPU struct {
	stop  context.CancelFunc
	done  chan struct{}
	profs []*profile.Profile
	err   error
}

// startIstiodCPU starts recording the CPU profile of the istiod whose HTTP
// debug address is httpAddr.
func startIstiodCPU(httpAddr string) *istiodCPU {
	ctx, stop := context.WithCancel(context.Background())
	p := &istiodCPU{stop: stop, done: make(chan struct{})}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, profileWindow)
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			// Not bound by ctx: a window cut short is lost, so the last
			// one runs to its end.
			prof, err := fetchProfile(url)
			if err != nil {
				p.err = err
				return
			}
			p.profs = append(p.profs, prof)
		}
	}()
	return p
}

// fetchProfile GETs one CPU profile.
func fetchProfile(url string) (*profile.Profile, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("istiod CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("istiod CPU profile: GET %s: %s", url, resp.Status)
	}
	prof, err := profile.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("istiod CPU profile: GET %s: %w", url, err)
	}
	return prof, nil
}

// write stops recording once the current window ends and writes the
// windows merged into one profile at path.
func (p *istiodCPU) write(path string) error {
	p.stop()
	<-p.done
	if p.err != nil {
		return p.err
	}
	if len(p.profs) == 0 {
		return errors.New("istiod CPU profile: no window recorded")
	}
	merged, err := profile.Merge(p.profs)
	if err != nil {
		return fmt.Errorf("istiod CPU profile: merging %d windows: %w", len(p.profs), err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := merged.Write(f); err != nil {
		f.Close()
		return fmt.Errorf("istiod CPU profile: %w", err)
	}
	return f.Close()
}
