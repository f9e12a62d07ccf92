package render

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/meshfleet/meshfleet/manifests"
)

// MinKubernetesVersion is the oldest Kubernetes meshfleet installs on and
// a member cluster may run: the oldest that every chart set it carries
// supports. The operator's pre-check, meshctl's preflight and meshctl check
// all compare against it.
var MinKubernetesVersion = version.MustParseGeneric("1.29.0")

// Chart names: Istio's under manifests/charts/istio/<minor>, meshfleet's
// mesh chart under manifests/charts.
const (
	chartBase     = "base"
	chartIstiod   = "istio-discovery"
	chartGateway  = "gateway"
	chartMesh     = "mesh"
	istiodRelease = "istiod"
	istioCharts   = "charts/istio"
)

// ChartSet is the chart set of one supported Istio minor: Istio's base,
// istio-discovery and gateway charts as its release tagged them.
type ChartSet struct {
	// Minor is the Istio minor, e.g. 1.30; spec.version picks the set by it.
	Minor string
	// Version is the charts' version label, e.g. 1.30.3.
	Version string
}

var (
	chartsOnce sync.Once
	charts     map[string]*chart.Chart // by <minor>/<chart>, the mesh chart by its name
	chartSets  []ChartSet
	chartsErr  error
)

func loadAll() {
	charts = map[string]*chart.Chart{}
	c, err := loadEmbedded(manifests.Charts, path.Join("charts", chartMesh))
	if err != nil {
		chartsErr = fmt.Errorf("load chart %s: %w", chartMesh, err)
		return
	}
	charts[chartMesh] = c
	minors, err := fs.ReadDir(manifests.Charts, istioCharts)
	if err != nil {
		chartsErr = fmt.Errorf("list Istio chart sets: %w", err)
		return
	}
	for _, m := range minors {
		for _, n := range []string{chartBase, chartIstiod, chartGateway} {
			c, err := loadEmbedded(manifests.Charts, path.Join(istioCharts, m.Name(), n))
			if err != nil {
				chartsErr = fmt.Errorf("load chart %s of Istio %s: %w", n, m.Name(), err)
				return
			}
			charts[m.Name()+"/"+n] = c
		}
		chartSets = append(chartSets, ChartSet{Minor: m.Name(), Version: charts[m.Name()+"/"+chartIstiod].Metadata.Version})
	}
	sort.Slice(chartSets, func(i, j int) bool { return minorLess(chartSets[i].Minor, chartSets[j].Minor) })
}

// SupportedVersions returns the chart sets meshfleet carries, oldest first.
func SupportedVersions() ([]ChartSet, error) {
	chartsOnce.Do(loadAll)
	return slices.Clone(chartSets), chartsErr
}

// ChartSetFor returns the chart set that installs Istio version v (any
// patch of a supported minor), or an error listing the supported minors.
func ChartSetFor(v string) (ChartSet, error) {
	sets, err := SupportedVersions()
	if err != nil {
		return ChartSet{}, err
	}
	minor := minorOf(v)
	for _, s := range sets {
		if s.Minor == minor {
			return s, nil
		}
	}
	return ChartSet{}, fmt.Errorf("no charts for Istio %s, an unsupported release; use a release of a supported minor: %s", v, describeSets(sets))
}

func describeSets(sets []ChartSet) string {
	parts := make([]string, 0, len(sets))
	for _, s := range sets {
		parts = append(parts, fmt.Sprintf("%s.x (charts %s)", s.Minor, s.Version))
	}
	return strings.Join(parts, ", ")
}

// minorOf returns "major.minor" of a version such as 1.30.3 or 1.31.0-rc.0.
func minorOf(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

func minorLess(a, b string) bool {
	var am, an, bm, bn int
	_, _ = fmt.Sscanf(a, "%d.%d", &am, &an)
	_, _ = fmt.Sscanf(b, "%d.%d", &bm, &bn)
	if am != bm {
		return am < bm
	}
	return an < bn
}

// loadChart returns an embedded chart: Istio's of the given minor, or the
// mesh chart (minor ignored).
func loadChart(minor, name string) (*chart.Chart, error) {
	chartsOnce.Do(loadAll)
	if chartsErr != nil {
		return nil, chartsErr
	}
	key := minor + "/" + name
	if name == chartMesh {
		key = name
	}
	c, ok := charts[key]
	if !ok {
		return nil, fmt.Errorf("no chart %q for Istio %s in manifests/charts", name, minor)
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
func renderChart(minor, name, release, namespace string, values map[string]any) ([]string, error) {
	c, err := loadChart(minor, name)
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
