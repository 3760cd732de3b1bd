# Weft developer commands. `make demo` and `make test` are the two documented entry points.
CARGO ?= cargo

.PHONY: demo test build lint deps bench crds golden clean

## demo: a local mesh on loopback with a canary rollout you can watch (Ctrl-C stops it)
demo: build
	$(CARGO) run -q -p weft-e2e --bin weft-demo

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

## bench: requests/s and p50/p99 latency, direct vs through one proxy, as ratios (release build)
bench:
	$(CARGO) build --release --workspace --bins
	$(CARGO) run -q --release -p weft-e2e --bin weft-bench

## crds: regenerate crds/manifests from the Rust types
crds:
	$(CARGO) run -q -p weft-crds --bin crdgen

## golden: rewrite golden test files after an intended change (review the diff!)
golden:
	WEFT_UPDATE_GOLDEN=1 $(CARGO) test --workspace

clean:
	$(CARGO) clean
