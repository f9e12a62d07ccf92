# meshfleet — every target installs what it needs. Tool binaries are cached
# outside the repository, keyed by version, so only the first build is slow.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

K8S_VERSION          := v1.37.2
ISTIO_MODULE_VERSION := v0.0.0-20260827124520-eed52ebb66ad
CACHE                ?= $(HOME)/.cache/meshfleet
K8S_BIN              := $(CACHE)/k8s-$(K8S_VERSION)
DEV_BIN              := $(CACHE)/dev-$(shell sha256sum tests/tools/dev/go.sum | cut -c1-12)
BIN                  := bin

# Test binaries and tools are linked without the symbol table and DWARF
# (-s -w): panics, stack traces and pprof read the pclntab, which stays,
# and the link of each of the ~130 test binaries of `make test` costs a
# third less CPU (a `pkg/operator` test binary: 9.3 against 13 CPU-s), the
# link of kube-apiserver 16 against 26. TEST_LDFLAGS= keeps them (delve).
TOOL_LDFLAGS ?= -s -w
TEST_LDFLAGS ?= -s -w

# One compile configuration for tools, tests, binaries and images: the
# images' (static, -trimpath). Go keys each compiled package by these
# settings, so with cgo on and full paths for everything else the image
# test compiled all of meshfleet's dependencies a second time (cold: 410 s
# against 10.5 s; ARCHITECTURE decision 76). GO_TRIMPATH= keeps full
# source paths (delve).
export CGO_ENABLED ?= 0
GO_TRIMPATH ?= -trimpath
export GOFLAGS := $(strip $(filter-out -trimpath,$(shell go env GOFLAGS)) $(GO_TRIMPATH))

# Version stamps that a plain `go build` leaves empty (the API server would
# report v0.0.0-master and misjudge its own compatibility version).
K8S_LDFLAGS := $(TOOL_LDFLAGS) $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
  -X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION:v%=%))) \
  -X $(p).gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION:v%=%))) -X $(p).gitTreeState=clean)

KUBE_APISERVER := $(K8S_BIN)/kube-apiserver
KUBECTL        := $(K8S_BIN)/kubectl
KUBE_CM        := $(K8S_BIN)/kube-controller-manager
# kube-scheduler and kwok: clusters with fake nodes (localcluster
# ClusterOptions.FakeNodes), where Deployments roll out as on a cluster.
KUBE_SCHEDULER := $(K8S_BIN)/kube-scheduler
KWOK_VERSION   := v0.8.0
KWOK_BIN       := $(CACHE)/kwok-$(KWOK_VERSION)
KWOK           := $(KWOK_BIN)/kwok
KWOK_CONFIG    := $(KWOK_BIN)/stages.yaml
CONTROLLER_GEN := $(DEV_BIN)/controller-gen
STATICCHECK    := $(DEV_BIN)/staticcheck
# istiod, from the tools module tests/tools/istio (which pins the same
# ISTIO_MODULE_VERSION), cached under the pseudo-version's commit hash.
ISTIO_BIN       := $(CACHE)/istio-$(lastword $(subst -, ,$(ISTIO_MODULE_VERSION)))
PILOT_DISCOVERY := $(ISTIO_BIN)/pilot-discovery
# istioctl from the same Istio module (tests: analyze, proxy-status,
# remote-clusters against the installed mesh).
ISTIOCTL        := $(ISTIO_BIN)/istioctl
# Kiali (its own go.mod has a replace, so `go install` refuses it): built
# from a copy of the downloaded module.
KIALI_VERSION   := v1.89.0
KIALI           := $(CACHE)/kiali-$(KIALI_VERSION)/kiali
# Flagger, the canary controller the interop e2e runs beside meshctl canary
# (tests/tools/flagger), with its CRDs (Canary, MetricTemplate,
# AlertProvider) copied from the same module beside it.
FLAGGER_VERSION := v1.36.1
FLAGGER_BIN     := $(CACHE)/flagger-$(FLAGGER_VERSION)
FLAGGER         := $(FLAGGER_BIN)/flagger
FLAGGER_CRDS    := $(FLAGGER_BIN)/crd.yaml

export MESHFLEET_KUBE_APISERVER          := $(KUBE_APISERVER)
export MESHFLEET_KUBECTL                 := $(KUBECTL)
export MESHFLEET_KUBE_CONTROLLER_MANAGER := $(KUBE_CM)
export MESHFLEET_PILOT_DISCOVERY         := $(PILOT_DISCOVERY)
export MESHFLEET_ISTIOCTL                := $(ISTIOCTL)
export MESHFLEET_KIALI                   := $(KIALI)
export MESHFLEET_KUBE_SCHEDULER          := $(KUBE_SCHEDULER)
export MESHFLEET_KWOK                    := $(KWOK)
export MESHFLEET_KWOK_CONFIG             := $(KWOK_CONFIG)
export MESHFLEET_FLAGGER                 := $(FLAGGER)
export MESHFLEET_FLAGGER_CRDS            := $(FLAGGER_CRDS)

# meshfleet's build identity (pkg/version): every rendered manifest runs
# $(IMAGE_REPO):$(VERSION). `make images PUSH=registry/repo` builds for and
# pushes to that repository.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null)
PUSH       ?=
IMAGE_REPO ?= $(if $(PUSH),$(PUSH),ghcr.io/meshfleet/meshfleet)
VERSION_LDFLAGS := -X github.com/meshfleet/meshfleet/pkg/version.version=$(VERSION) \
  -X github.com/meshfleet/meshfleet/pkg/version.repository=$(IMAGE_REPO) \
  -X github.com/meshfleet/meshfleet/pkg/version.revision=$(REVISION)

GO_TEST_FLAGS ?=
GO_TEST       := go test -ldflags '$(TEST_LDFLAGS)'
FUZZTIME      ?= 30s
# FUZZMINIMIZETIME bounds the minimizing of each new input: at Go's default
# (60s) one interesting CR kept FuzzRender's workers minimizing, not
# fuzzing, for the whole FUZZTIME (33 executions in 30 s).
FUZZMINIMIZETIME ?= 3s

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code, CRDs (crds/), the operator's RBAC role, and their copies in the meshfleet chart.
	$(CONTROLLER_GEN) object paths=./pkg/api/...
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./pkg/api/... output:crd:artifacts:config=crds
	$(CONTROLLER_GEN) rbac:roleName=meshfleet-operator paths=./pkg/operator/... output:rbac:artifacts:config=manifests/operator/rbac
	rm -f manifests/charts/meshfleet/crds/*.yaml && cp crds/*.yaml manifests/charts/meshfleet/crds/
	cp manifests/operator/rbac/role.yaml manifests/charts/meshfleet/files/operator-role.yaml

.PHONY: istio-charts
istio-charts: ## Store Istio release ISTIO_TAG's charts (base, gateway, istio-discovery) from a git checkout or mirror of istio/istio (ISTIO_REPO) under manifests/charts/istio/<minor>.
	@test -n "$(ISTIO_TAG)" -a -n "$(ISTIO_REPO)" || { echo "set ISTIO_TAG=<release tag, e.g. 1.30.3> and ISTIO_REPO=<git dir of istio/istio>"; exit 1; }
	minor=$$(echo $(ISTIO_TAG) | cut -d. -f1,2); dst=manifests/charts/istio/$$minor; tmp=$$(mktemp -d); \
	git -C $(ISTIO_REPO) archive $(ISTIO_TAG) manifests/charts/base manifests/charts/gateway manifests/charts/istio-control/istio-discovery | tar -x -C $$tmp && \
	rm -rf $$dst && mkdir -p $$dst && \
	for c in base gateway istio-control/istio-discovery; do cp -r $$tmp/manifests/charts/$$c $$dst/; done && \
	sed -i 's/^version: .*/version: $(ISTIO_TAG)/; s/^appVersion: .*/appVersion: $(ISTIO_TAG)/' $$dst/*/Chart.yaml && \
	chmod -R u+w $$dst; rm -rf $$tmp

.PHONY: istio-charts-module
istio-charts-module: ## Store the charts of the Istio Go module the tests build istiod from (ISTIO_MODULE_VERSION) as manifests/charts/istio/1.31.
	dir=$$(cd tests/tools/k8s && go mod download -json istio.io/istio@$(ISTIO_MODULE_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	minor=$$(cat $$dir/VERSION); dst=manifests/charts/istio/$$minor; rm -rf $$dst; mkdir -p $$dst; \
	for c in base gateway istio-control/istio-discovery; do cp -r $$dir/manifests/charts/$$c $$dst/; done; \
	sed -i "s/^version: .*/version: $$minor.0-dev.$(lastword $(subst -, ,$(ISTIO_MODULE_VERSION)))/; s/^appVersion: .*/appVersion: $$minor.0-dev.$(lastword $(subst -, ,$(ISTIO_MODULE_VERSION)))/" $$dst/*/Chart.yaml; \
	chmod -R u+w $$dst

.PHONY: update-golden
update-golden: ## Rewrite golden files (testdata/, dashboard ConfigMaps) from the current code.
	go test ./pkg/render ./pkg/locality -run Golden -update
	go test -tags integration ./tests/dashboards -run TestDashboards -update

.PHONY: gen-check
gen-check: generate update-golden ## Regenerate everything and fail if the tree changed.
	git diff --exit-code -- crds pkg manifests || { echo "generated files are stale: run make generate update-golden and commit"; exit 1; }

.PHONY: tidy-check
tidy-check: ## Fail if go mod tidy would change go.mod or go.sum.
	@# Its output only if it fails: on a cold cache it lists every module it fetches.
	@echo "go mod tidy -diff"; out=$$(go mod tidy -diff 2>&1) || { echo "$$out" | grep -v '^go: downloading'; \
	  echo "go.mod/go.sum are not tidy: run go mod tidy and commit"; exit 1; }

.PHONY: fmt-check
fmt-check: ## Fail if a Go file is not gofmt-formatted.
	@files=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$files" ] || { echo "not gofmt-formatted (run gofmt -w): $$files"; exit 1; }

.PHONY: verify
verify: tidy-check fmt-check gen-check lint ## What CI checks besides the tests: tidy modules, formatted code, generated files up to date, lint clean.

.PHONY: lint
# One pass with every test tag: no file is built only without a tag (no
# `//go:build !integration`), so it checks every file the four separate
# passes did, and analyses each package once instead of four times.
LINT_TAGS := integration,e2e,chaos
lint: $(STATICCHECK) ## go vet and staticcheck.
	@! grep -rlE --include=*.go '^//go:build .*!(integration|e2e|chaos)' . || \
	  { echo "the files above are built only without a test tag, which lint's one pass does not check"; exit 1; }
	go vet -tags $(LINT_TAGS) ./...
	$(STATICCHECK) -tags $(LINT_TAGS) ./...

##@ Build

.PHONY: build
build: ## Build meshfleet (control-plane components) and meshctl into bin/.
	go build -ldflags '$(VERSION_LDFLAGS)' -o $(BIN)/ ./cmd/...

PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: images
images: ## OCI images of meshfleet (PLATFORMS) into bin/images, no Docker needed; PUSH=registry/repo also pushes there.
	go run -ldflags '$(VERSION_LDFLAGS)' ./tools/imagebuild --platforms=$(PLATFORMS) --out=$(BIN)/images $(if $(PUSH),--push)

.PHONY: tools
tools: $(KUBE_APISERVER) $(KUBE_SCHEDULER) $(KWOK) $(PILOT_DISCOVERY) $(ISTIOCTL) $(KIALI) $(FLAGGER) etcd prometheus ## Build kube-apiserver, kubectl, kube-controller-manager, kube-scheduler, kwok, istiod, istioctl, Kiali and Flagger; install etcd and Prometheus.

# $(call build-tool,name,estimate,tools module,out dir,go build arguments):
# one line per tool instead of the module downloads and compiler output,
# which go to a log that is shown if the build fails; a dot a minute.
TOOL_LOGS := $(CACHE)/logs
define build-tool
	@mkdir -p $(4) $(TOOL_LOGS)
	@echo "building $(1) once (cold, on two cores: $(2); log: $(TOOL_LOGS)/$(1).log)"
	@start=$$(date +%s); (while sleep 60 >/dev/null 2>&1; do printf .; done) & dots=$$!; \
	  if (cd $(3) && go build -o $(4)/ $(5)) >$(TOOL_LOGS)/$(1).log 2>&1; then kill $$dots; \
	  echo " built $(1) in $$(( $$(date +%s) - start ))s"; \
	  else kill $$dots; tail -n 40 $(TOOL_LOGS)/$(1).log; echo "building $(1) failed: see $(TOOL_LOGS)/$(1).log"; exit 1; fi
endef

$(KUBE_APISERVER) $(KUBECTL) $(KUBE_CM) &:
	$(call build-tool,kubernetes-$(K8S_VERSION),about 8 min idle and up to 25 busy,tests/tools/k8s,$(K8S_BIN),-ldflags '$(K8S_LDFLAGS)' k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kube-controller-manager)

$(KUBE_SCHEDULER):
	$(call build-tool,kube-scheduler-$(K8S_VERSION),under a minute after kube-apiserver,tests/tools/k8s,$(K8S_BIN),-ldflags '$(K8S_LDFLAGS)' k8s.io/kubernetes/cmd/kube-scheduler)

# kwok from the tools module tests/tools/kwok, with its "fast" node and pod
# stages (from the same module) beside it as its --config.
$(KWOK) $(KWOK_CONFIG) &:
	$(call build-tool,kwok-$(KWOK_VERSION),under a minute,tests/tools/kwok,$(KWOK_BIN),-ldflags '$(TOOL_LDFLAGS)' sigs.k8s.io/kwok/cmd/kwok)
	@dir=$$(cd tests/tools/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) && \
	  for f in node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do \
	    echo '---'; cat $$dir/kustomize/stage/$$f.yaml; done >$(KWOK_CONFIG).tmp && mv $(KWOK_CONFIG).tmp $(KWOK_CONFIG)

$(PILOT_DISCOVERY):
	$(call build-tool,istiod,about 4 min idle and up to 15 busy,tests/tools/istio,$(ISTIO_BIN),-ldflags '$(TOOL_LDFLAGS)' istio.io/istio/pilot/cmd/pilot-discovery)

$(ISTIOCTL):
	$(call build-tool,istioctl,about 3-5 min after istiod,tests/tools/istio,$(ISTIO_BIN),-ldflags '$(TOOL_LDFLAGS)' istio.io/istio/istioctl/cmd/istioctl)

# Flagger from the tools module tests/tools/flagger, with the CRDs of the
# same module beside it (the canary interop e2e applies them from there).
$(FLAGGER) $(FLAGGER_CRDS) &:
	$(call build-tool,flagger-$(FLAGGER_VERSION),about 3-12 min,tests/tools/flagger,$(FLAGGER_BIN),-ldflags '$(TOOL_LDFLAGS)' github.com/fluxcd/flagger/cmd/flagger)
	@dir=$$(cd tests/tools/flagger && go list -m -f '{{.Dir}}' github.com/fluxcd/flagger) && \
	  cp $$dir/artifacts/flagger/crd.yaml $(FLAGGER_CRDS).tmp && chmod u+w $(FLAGGER_CRDS).tmp && mv $(FLAGGER_CRDS).tmp $(FLAGGER_CRDS)

# Kiali builds from its own go.mod, so from a writable copy of its module.
KIALI_SRC := $(CACHE)/src/kiali-$(KIALI_VERSION)
$(KIALI):
	@rm -rf $(KIALI_SRC) && mkdir -p $(KIALI_SRC) $(TOOL_LOGS) && \
	  dir=$$(cd $(KIALI_SRC) && go mod download -json github.com/kiali/kiali@$(KIALI_VERSION) 2>$(TOOL_LOGS)/kiali-download.log | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') && \
	  cp -r $$dir/. $(KIALI_SRC)/ && chmod -R u+w $(KIALI_SRC) || { cat $(TOOL_LOGS)/kiali-download.log; exit 1; }
	$(call build-tool,kiali-$(KIALI_VERSION),about 5-8 min,$(KIALI_SRC),$(dir $(KIALI)),-ldflags '$(TOOL_LDFLAGS)' .)
	@rm -rf $(KIALI_SRC)

$(CONTROLLER_GEN) $(STATICCHECK) &:
	$(call build-tool,controller-gen+staticcheck,about 1-4 min,tests/tools/dev,$(DEV_BIN),-ldflags '$(TOOL_LDFLAGS)' sigs.k8s.io/controller-tools/cmd/controller-gen honnef.co/go/tools/cmd/staticcheck)

.PHONY: prometheus
prometheus: ## Install Debian's Prometheus (dashboard tests, canary gate).
	@test -x /usr/bin/prometheus || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus >/dev/null; }

.PHONY: etcd
etcd:
	@command -v etcd >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq etcd-server >/dev/null; }

##@ Test

# `make test` builds its tools in one background job, so that nothing waits
# for a build it does not need: the cluster tools (Kubernetes, kube-scheduler,
# kwok, istiod) beside lint, which needs none of them (the module downloads
# and the links that keep one core idle then serve the other), and then the
# tools only the e2e tests run (istioctl, Kiali, Flagger) at the lowest
# priority beside the integration tests, which leave a third to half of the
# two cores idle, waiting on API servers. Each waiting point prints the
# job's log (one line per tool) and fails with it if a build failed.
CLUSTER_TOOLS   := $(KUBE_APISERVER) $(KUBE_SCHEDULER) $(KWOK) $(PILOT_DISCOVERY)
E2E_TOOLS       := $(ISTIOCTL) $(KIALI) $(FLAGGER)
TOOLS_JOB_LOG    = $(TOOL_LOGS)/$(1)-tools.log
TOOLS_JOB_EXIT   = $(TOOL_LOGS)/$(1)-tools.exit

.PHONY: test
test: $(CONTROLLER_GEN) $(STATICCHECK) etcd prometheus ## verify, then unit and integration (real kube-apiservers), end-to-end (real istiod, gRPC xDS clients), chaos and fuzz tests.
	@$(MAKE) --no-print-directory tools-start
	$(MAKE) tidy-check fmt-check lint
	@$(MAKE) --no-print-directory tools-wait TOOLS_JOB=cluster
	$(MAKE) gen-check
	@# Every unit test runs here too: no file is built only without a
	@# tag (lint checks), so a separate untagged pass would run them twice.
	$(GO_TEST) $(GO_TEST_FLAGS) -tags integration -p 1 -timeout 30m ./...
	@$(MAKE) --no-print-directory tools-wait TOOLS_JOB=e2e
	$(GO_TEST) $(GO_TEST_FLAGS) -tags e2e -p 1 -timeout 45m ./tests/e2e/...
	$(MAKE) chaos
	$(MAKE) fuzz

# $(call tools-job,name,command prefix,targets): one half of the job, its
# output to its log and its status alone to its exit file.
define tools-job
(if $(2) $(MAKE) --no-print-directory $(3); then s=0; else s=$$?; fi; echo $$s >$(call TOOLS_JOB_EXIT,$(1))) >$(call TOOLS_JOB_LOG,$(1)) 2>&1
endef

# tools-start starts the job; the exit file of each half holds its status.
# Up-to-date tools need no job.
.PHONY: tools-start tools-wait
tools-start:
	@mkdir -p $(TOOL_LOGS) && rm -f $(call TOOLS_JOB_EXIT,cluster) $(call TOOLS_JOB_EXIT,e2e)
	@if $(MAKE) -q $(CLUSTER_TOOLS) $(E2E_TOOLS) >/dev/null 2>&1; then \
	  for j in cluster e2e; do : >$(TOOL_LOGS)/$$j-tools.log; echo 0 >$(TOOL_LOGS)/$$j-tools.exit; done; else \
	  echo "building kube-apiserver, kubectl, kube-controller-manager, kube-scheduler, kwok and istiod beside lint (log: $(call TOOLS_JOB_LOG,cluster)),"; \
	  echo "then istioctl, Kiali and Flagger, and the fuzz targets' test binaries, at low priority beside the tests (log: $(call TOOLS_JOB_LOG,e2e))"; \
	  ( $(call tools-job,cluster,,$(CLUSTER_TOOLS)); $(call tools-job,e2e,nice -n 19,$(E2E_TOOLS) fuzz-build) ) </dev/null & fi

# tools-wait TOOLS_JOB=cluster|e2e follows that half's log until it ends.
tools-wait:
	@tail -n +1 -f $(call TOOLS_JOB_LOG,$(TOOLS_JOB)) & t=$$!; \
	  until [ -s $(call TOOLS_JOB_EXIT,$(TOOLS_JOB)) ]; do sleep 2; done; sleep 1; kill $$t; echo; \
	  [ "$$(cat $(call TOOLS_JOB_EXIT,$(TOOLS_JOB)))" = 0 ] || { echo "building the $(TOOLS_JOB) tools failed: see $(call TOOLS_JOB_LOG,$(TOOLS_JOB))"; exit 1; }

.PHONY: unit
unit: ## Unit tests only (no binaries needed).
	$(GO_TEST) $(GO_TEST_FLAGS) ./...

.PHONY: e2e
e2e: tools ## End-to-end tests under tests/e2e.
	$(GO_TEST) $(GO_TEST_FLAGS) -tags e2e -p 1 -v -timeout 45m ./tests/e2e/...

.PHONY: chaos
chaos: tools ## Chaos suite: kill and restart each component under traffic; prints the table (tests/chaos).
	$(GO_TEST) $(GO_TEST_FLAGS) -tags chaos -p 1 -v -timeout 20m ./tests/chaos/...

.PHONY: fuzz
fuzz: ## Bounded fuzzing (FUZZTIME each) of the CR → render path and the tunnel's request parsing: no panic.
	$(GO_TEST) -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./pkg/render/
	$(GO_TEST) -run '^$$' -fuzz '^FuzzRequestParsing$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./pkg/tunnel/

# fuzz-build compiles the fuzz targets as `make fuzz` does (instrumented
# for fuzzing: every package they import again, about 4 minutes cold), so
# that make test's last step finds them in Go's build cache; make test's
# background job runs it after the e2e tools. Errors are `make fuzz`'s to
# report.
.PHONY: fuzz-build
fuzz-build:
	@mkdir -p $(CACHE)/fuzz
	-$(GO_TEST) -c -o $(CACHE)/fuzz/ -fuzz '^FuzzRender$$' ./pkg/render/
	-$(GO_TEST) -c -o $(CACHE)/fuzz/ -fuzz '^FuzzRequestParsing$$' ./pkg/tunnel/

.PHONY: bench
bench: tools ## Benchmarks: print figures next to a baseline measured in the same run.
	go test ./pkg/render -run '^$$' -bench BenchmarkRender -benchtime 20x -benchmem
	go run -tags integration ./tests/bench/install
	go run -tags integration ./tests/bench/tunnel
	go run -tags e2e ./tests/bench/locality
	go run -tags e2e ./tests/bench/join
	go run -tags e2e ./tests/bench/fleet

.PHONY: sandbox
sandbox: $(KUBE_APISERVER) $(KUBE_SCHEDULER) $(KWOK) $(PILOT_DISCOVERY) etcd build ## Start a local multi-cluster sandbox with the mesh installed (Ctrl-C stops it).
	$(BIN)/meshctl sandbox up
