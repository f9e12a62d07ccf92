// Package chart loads meshfleet's own Helm chart (manifests/charts/meshfleet:
// CRDs, operator, RBAC) from the binary, stamped with this build's image
// (pkg/version), and renders it the way `helm template` does.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshfleet/meshfleet/manifests"
	"github.com/meshfleet/meshfleet/pkg/version"
)

// Dir is the chart's directory in manifests.Charts (and in the repository
// under manifests/).
const Dir = "charts/meshfleet"

// ReleaseName is the release name the docs and tests use.
const ReleaseName = "meshfleet"

// Load returns the chart with appVersion set to this build's image tag and
// image.repository to its repository, so that its default values run the
// image every other manifest of this build runs (version.Image()).
func Load() (*chartv2.Chart, error) {
	var files []*archive.BufferedFile
	err := fs.WalkDir(manifests.Charts, Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(manifests.Charts, p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(p, Dir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading chart %s: %w", Dir, err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", Dir, err)
	}
	c.Metadata.AppVersion = version.TagOf(version.Version())
	c.Metadata.Version = chartVersion(version.Version())
	img, ok := c.Values["image"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("chart %s: values.yaml has no image map", Dir)
	}
	img["repository"] = version.Repository()
	// The packaged chart keeps values.yaml as written (with its comments):
	// stamp the repository there too.
	for _, f := range c.Raw {
		if f.Name == "values.yaml" {
			f.Data = bytes.Replace(f.Data, []byte("repository: "+version.DefaultRepository+"\n"), []byte("repository: "+version.Repository()+"\n"), 1)
		}
	}
	return c, nil
}

// chartVersion is the build version as the SemVer 2 a chart version must
// be: v1.2.3 → 1.2.3, a `git describe` like 8f0f62f-dirty → 0.0.0-8f0f62f-dirty.
func chartVersion(v string) string {
	if sv, err := semver.StrictNewVersion(strings.TrimPrefix(v, "v")); err == nil {
		return sv.String()
	}
	pre := strings.NewReplacer("_", "-", ".", "-").Replace(version.TagOf(v))
	if sv, err := semver.StrictNewVersion("0.0.0-" + pre); err == nil {
		return sv.String()
	}
	return "0.0.0-dev"
}

// Package writes the chart, stamped with this build's version and image
// repository, as dir/meshfleet-<version>.tgz and returns the file's path.
func Package(dir string) (string, error) {
	c, err := Load()
	if err != nil {
		return "", err
	}
	p, err := chartutil.Save(c, dir)
	if err != nil {
		return "", fmt.Errorf("packaging chart %s: %w", Dir, err)
	}
	return p, nil
}

// Render renders the chart into namespace with values (nil: the defaults)
// as `helm template --include-crds` does: the CRDs first, then the
// templates' objects in file order.
func Render(namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	c, err := Load()
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, crd := range c.CRDObjects() {
		objs, err := decode(crd.Filename, crd.File.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	opts := common.ReleaseOptions{Name: ReleaseName, Namespace: namespace, IsInstall: true}
	vals, err := commonutil.ToRenderValues(c, values, opts, common.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("chart %s: values: %w", Dir, err)
	}
	rendered, err := engine.Render(c, vals)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", Dir, err)
	}
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		if strings.HasSuffix(n, ".yaml") && !strings.HasPrefix(path.Base(n), "_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		objs, err := decode(n, []byte(rendered[n]))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func decode(name string, b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("chart %s: %s: %w", Dir, name, err)
		}
		if len(obj) > 0 {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}
