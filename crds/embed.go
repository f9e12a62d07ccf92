// Package crds embeds meshfleet's CustomResourceDefinitions, generated into
// this directory by `make generate` (controller-gen) from pkg/api.
package crds

import "embed"

// FS holds every CRD YAML file of this directory.
//
//go:embed *.yaml
var FS embed.FS
