# Makefile of the ClusterStack operator for OpenStack. `make help` lists the targets.

# The build's version: a release tag (v0.1.0) on a tagged commit, else what `git describe` says
# (v0.1.0-3-gabcdef0, -dirty with uncommitted changes; the commit alone before the first tag).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VERSION_PKG := github.com/seed-a720dd5e/clusterstack-operator/internal/version
LDFLAGS := -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).revision=$(REVISION) -X $(VERSION_PKG).buildDate=$(BUILD_DATE)
# Image to build with docker-build and to name in the release artifacts. The registry is a
# placeholder: set REGISTRY (or IMG) to the registry you push to.
REGISTRY ?= registry.example.com/clusterstack
IMG ?= $(REGISTRY)/clusterstack-operator:$(VERSION)
# Every Go tool is pinned: controller-gen in go.mod's tool block, golangci-lint in hack/tools.
CONTROLLER_GEN ?= go tool controller-gen
LOCALBIN ?= $(CURDIR)/bin
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
# Go test flags; e.g. make test TEST_FLAGS=-v
TEST_FLAGS ?=
# How long each fuzz target runs in make fuzz: an execution count (Nx), not a duration. Go 1.26's
# fuzz coordinator can report a spurious "context deadline exceeded" failure when a duration-based
# -fuzztime expires on a loaded machine (golang/go#75804, fixed in Go 1.27); a count has no deadline.
FUZZ_TIME ?= 100000x

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs, RBAC and webhook manifests from the code markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./controllers/... output:rbac:artifacts:config=config/rbac
	@if grep -rqs 'kubebuilder:webhook' --include='*.go' controllers internal; then \
		$(CONTROLLER_GEN) webhook paths=./controllers/... output:webhook:artifacts:config=config/webhook; fi
	go run ./hack/artifacts sync-chart

.PHONY: generate
generate: ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: docs
docs: ## Generate the API reference (docs/api-reference.md) from the API types with crd-ref-docs.
	go tool crd-ref-docs --log-level=WARN --source-path=./api --config=hack/crd-ref-docs/config.yaml \
		--renderer=markdown --output-path=docs/api-reference.md

.PHONY: verify-generated
verify-generated: generate manifests docs ## Fail when committed generated files (API, config, the chart's copies, the API reference) are stale.
	@if [ -n "$$(git status --porcelain -- api config docs)" ]; then \
		echo "Generated files are stale; run 'make generate manifests docs' and commit:"; \
		git status --porcelain -- api config docs; git --no-pager diff --stat -- api config docs; exit 1; fi

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (built from hack/tools through the Go module proxy).
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT): hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint

.PHONY: envtest
envtest: ## Build (once, cached per user) the kube-apiserver and etcd that the tests run.
	@bash hack/envtest-assets.sh

.PHONY: capi-managers
capi-managers: ## Build (once, cached per user) the Cluster API managers that the real-Cluster-API tier (test/capi) runs.
	@bash hack/capi-managers.sh

# Each directory in its own assignment, so that a failed build stops make instead of leaving the
# variable empty (test/capi would skip instead of failing).
.PHONY: test
test: generate manifests ## Regenerate, then run all tests against a real API server (and real Cluster API in test/capi).
	assets="$$(bash hack/envtest-assets.sh)"; \
	managers="$$(bash hack/capi-managers.sh)"; \
	echo "test: compiling and running the tests (a cold build cache adds about 5 minutes of compiling on two idle cores; go test prints each package when it is done)" >&2; \
	KUBEBUILDER_ASSETS="$$assets" CAPI_MANAGERS_DIR="$$managers" go test $(TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_TIME (an execution count, e.g. 100000x) each.
	@bash hack/fuzz.sh $(FUZZ_TIME)

.PHONY: bench
bench: ## Run the benchmarks (speed, API writes, cloud calls, memory) and print their figures.
	KUBEBUILDER_ASSETS="$$(bash hack/envtest-assets.sh)" go test -run '^$$' -bench . -benchmem -benchtime 1x ./...

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/manager.
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/manager .

.PHONY: run
run: manifests generate ## Run the manager against the cluster of the current kubeconfig (no webhooks or runtime extension: they need certificates).
	go run . --webhooks=false --runtime-extension-port=0 --metrics-bind-address=:8080 --metrics-secure=false --health-probe-bind-address=:8081

# Where release-artifacts writes; gitignored.
RELEASE_DIR ?= out

.PHONY: release-artifacts
release-artifacts: ## Write the release into RELEASE_DIR: clusterctl's metadata.yaml, runtime-extension-components.yaml with IMG, the packaged Helm chart.
	go run ./hack/artifacts build -version $(VERSION) -image $(IMG) -out $(RELEASE_DIR)

.PHONY: docker-build
docker-build: ## Build the container image IMG (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg BUILD_DATE=$(BUILD_DATE) -t $(IMG) .

##@ Demo

# Each directory in its own assignment, as in test: a failed build stops make.
.PHONY: demo
demo: ## Run the operator on an embedded default: local control plane with real Cluster API, a workload API server, in-process registry and OpenStack double.
	assets="$$(bash hack/envtest-assets.sh)"; \
	managers="$$(bash hack/capi-managers.sh)"; \
	echo "demo: compiling the demo and the operator (about 4 minutes with a cold build cache on two idle cores, seconds when warm)" >&2; \
	KUBEBUILDER_ASSETS="$$assets" CAPI_MANAGERS_DIR="$$managers" go run ./hack/demo
