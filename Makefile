# Two commands matter: `make run` and `make test`. Both set up whatever is missing first.
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: setup setup-gpu plugins build dist run test lint fmt

## Install what is missing (redis-server, espeak-ng, wasm target, ONNX Runtime, model) and
## convert the model; then build the default plugins. Idempotent, fast the second time.
setup:
	bash scripts/setup.sh
	bash plugins/build.sh .cache/plugins

## On request: the CUDA build of ONNX Runtime and the CUDA 13 wheels (then `source .cache/gpu.env`).
setup-gpu: setup
	bash scripts/setup-gpu.sh

build: setup
	$(CARGO) build --release --bin kiki

## What users install: dist/kiki without line tables (dist/kiki.debug holds them).
dist: build
	bash scripts/dist.sh $(CARGO_TARGET_DIR)/release/kiki dist

## Set up, build and start everything on 127.0.0.1:8080 (KIKI_LISTEN, KIKI_REDIS_URL override).
run: build
	$(CARGO_TARGET_DIR)/release/kiki up

## Set up and run every test: host unit + integration tests (with the FunASR and OpenAI client libraries in
## tests/clients/), plugin crates, the browser test,
## the fuzz targets (20 s each; `bash protocol/fuzz/run.sh 600` for a longer run), lints.
test: setup
	bash plugins/testing/build.sh .cache/test-plugins
	bash tests/clients/setup.sh
	$(CARGO) test --release --workspace
	cd plugins && $(CARGO) test
	bash tests/browser/run.sh
	bash protocol/fuzz/run.sh 20
	$(MAKE) lint

lint:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path protocol/fuzz/Cargo.toml --check
	cd plugins && $(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path protocol/fuzz/Cargo.toml
	cd plugins && $(CARGO) fmt --all
