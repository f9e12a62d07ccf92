package dashboards

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"sigs.k8s.io/yaml"
)

// PrometheusBinary is where Debian's prometheus package installs Prometheus.
const PrometheusBinary = "/usr/bin/prometheus"

// Prometheus is a Prometheus server process scraping the test's targets.
type Prometheus struct {
	URL     string
	API     promv1.API
	LogPath string
}

// StartPrometheus runs Prometheus on 127.0.0.1, scraping each job's
// host:port targets at /metrics every interval, until the test ends.
func StartPrometheus(t testing.TB, jobs map[string][]string, interval time.Duration) *Prometheus {
	t.Helper()
	if _, err := os.Stat(PrometheusBinary); err != nil {
		t.Fatalf("%s not found: run make tools (it installs Debian's prometheus package)", PrometheusBinary)
	}
	dir := t.TempDir()
	var scrape []any
	for job, targets := range jobs {
		scrape = append(scrape, map[string]any{
			"job_name":        job,
			"scrape_interval": interval.String(),
			"static_configs":  []any{map[string]any{"targets": targets}},
		})
	}
	cfg, err := yaml.Marshal(map[string]any{
		"global":         map[string]any{"scrape_interval": interval.String(), "evaluation_interval": interval.String()},
		"scrape_configs": scrape,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(PrometheusBinary,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.console.templates="+dir, "--web.console.libraries="+dir,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", PrometheusBinary, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", b)
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus at %s not ready after 30s (last error %v); log:\n%s", url, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return &Prometheus{URL: url, API: promv1.NewAPI(c), LogPath: logPath}
}

// WaitTargetsUp waits until every scrape target has been scraped
// successfully at least once.
func (p *Prometheus) WaitTargetsUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		res, err := p.API.Targets(ctx)
		if err == nil {
			var down []string
			for _, tg := range res.Active {
				if tg.Health != promv1.HealthGood {
					down = append(down, fmt.Sprintf("%s %s (%s %s)", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastError))
				}
			}
			if len(down) == 0 && len(res.Active) > 0 {
				return
			}
			last = strings.Join(down, "; ")
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("prometheus targets not up after %v: %s", timeout, last)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
