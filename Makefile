# Weft developer commands. `make demo` and `make test` are the two documented entry points.
CARGO ?= cargo

.PHONY: demo test build lint deps bench bench-scale crds golden clean images chart-check helm e2e e2e-cluster e2e-kind

# Where cargo puts binaries (honours CARGO_TARGET_DIR). demo and bench run what `build` made: `cargo run -p` would
# resolve features for one package only and silently recompile shared crates first.
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

## demo: a local mesh on loopback with a canary rollout you can watch (Ctrl-C stops it)
demo: build
	@"$(TARGET_DIR)/debug/weft-demo"

## test: everything CI checks: formatting, lints, unit, integration and end-to-end tests
test: deps lint build
	$(CARGO) test --workspace

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

deps:
	scripts/install-test-deps.sh

## bench: requests/s and p50/p99 latency, direct vs through one proxy, as ratios; weft-proxy vs nginx and haproxy (release build)
bench:
	scripts/install-bench-deps.sh
	$(CARGO) build --release --workspace --bins
	@"$(TARGET_DIR)/release/weft-bench"

## bench-scale: control-plane cost as the mesh grows (S Services x P proxies), release build; BENCH_SCALE_ARGS to narrow
BENCH_SCALE_ARGS ?=
bench-scale:
	$(CARGO) build --release --workspace --bins
	@"$(TARGET_DIR)/release/weft-scale" $(BENCH_SCALE_ARGS)

## crds: regenerate crds/manifests and the weft-crds chart's templates from the Rust types
crds:
	$(CARGO) run -q -p weft-crds --bin crdgen

## images: the weft-operator, weft-webhook, weft-proxy (and weft-e2e test app) images from ./Dockerfile (needs a container engine)
IMAGE_REGISTRY ?= ghcr.io/weft-mesh
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/weft/Chart.yaml)
CONTAINER_ENGINE ?= docker
images:
	@command -v $(CONTAINER_ENGINE) >/dev/null 2>&1 || { echo "make images: '$(CONTAINER_ENGINE)' not found; install Docker (or set CONTAINER_ENGINE=podman)" >&2; exit 1; }
	@$(CONTAINER_ENGINE) info >/dev/null 2>&1 || { echo "make images: '$(CONTAINER_ENGINE)' cannot reach a container engine (is the daemon running?); no images built" >&2; exit 1; }
	@for target in operator webhook proxy e2e; do \
	  echo "building $(IMAGE_REGISTRY)/weft-$$target:$(IMAGE_TAG)"; \
	  DOCKER_BUILDKIT=1 $(CONTAINER_ENGINE) build --target $$target -t $(IMAGE_REGISTRY)/weft-$$target:$(IMAGE_TAG) . || exit 1; \
	done

## helm: install helm when missing (scripts/install-helm.sh)
helm:
	scripts/install-helm.sh

## chart-check: helm lint and the rendered-manifest checks of charts/weft-crds and charts/weft
chart-check: helm
	$(CARGO) build -p weft-operator -p weft-webhook --bins
	$(CARGO) test -p weft-e2e --test chart

## e2e: the whole-mesh e2e suite on the local backend (network namespaces as pods; needs root), printed in full
e2e: build
	$(CARGO) test -p weft-e2e --test scenarios --test netns_capture -- --nocapture

## e2e-cluster: the same scenarios against the cluster in KUBECONFIG (installs the charts; images must be pullable)
e2e-cluster: build
	WEFT_E2E_CLUSTER=1 $(CARGO) test -p weft-e2e --test scenarios cluster_backend -- --nocapture

## e2e-kind: create a kind cluster, build and load the images, run e2e-cluster (needs kind and a container engine)
e2e-kind:
	scripts/e2e-kind.sh

## golden: rewrite golden test files after an intended change (review the diff!)
golden:
	WEFT_UPDATE_GOLDEN=1 $(CARGO) test --workspace

clean:
	$(CARGO) clean
