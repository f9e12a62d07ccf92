package render

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"

	"github.com/meshfleet/meshfleet/manifests"
)

// Chart names under manifests/charts.
const (
	chartBase     = "base"
	chartIstiod   = "istio-discovery"
	chartGateway  = "gateway"
	chartMesh     = "mesh"
	istiodRelease = "istiod"
)

var (
	chartsOnce sync.Once
	charts     map[string]*chart.Chart
	chartsErr  error
)

// loadChart returns an embedded chart, loading them all on first use.
func loadChart(name string) (*chart.Chart, error) {
	chartsOnce.Do(func() {
		charts = map[string]*chart.Chart{}
		for _, n := range []string{chartBase, chartIstiod, chartGateway, chartMesh} {
			c, err := loadEmbedded(manifests.Charts, path.Join("charts", n))
			if err != nil {
				chartsErr = fmt.Errorf("load chart %s: %w", n, err)
				return
			}
			charts[n] = c
		}
	})
	if chartsErr != nil {
		return nil, chartsErr
	}
	c, ok := charts[name]
	if !ok {
		return nil, fmt.Errorf("no chart %q in manifests/charts", name)
	}
	return c, nil
}

func loadEmbedded(fsys fs.FS, dir string) (*chart.Chart, error) {
	var files []*archive.BufferedFile
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(p, dir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(files)
}

// renderChart runs Helm's template engine on one chart and returns its
// manifests in file-name order, NOTES and partials left out.
func renderChart(name, release, namespace string, values map[string]any) ([]string, error) {
	c, err := loadChart(name)
	if err != nil {
		return nil, err
	}
	opts := common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}
	vals, err := chartutil.ToRenderValues(c, values, opts, common.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("chart %s: values: %w", name, err)
	}
	out, err := engine.Render(c, vals)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", name, err)
	}
	names := make([]string, 0, len(out))
	for n := range out {
		if strings.HasSuffix(n, "NOTES.txt") || strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	docs := make([]string, 0, len(names))
	for _, n := range names {
		docs = append(docs, out[n])
	}
	return docs, nil
}
