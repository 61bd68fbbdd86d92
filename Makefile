# Convergence — the commands. `make run` and `make test` work on a fresh clone.
#
# DuckDB: by default the embedded warehouse links DuckDB's official prebuilt libduckdb.so
# (fetched by scripts/fetch-duckdb.sh into .cache/, a few seconds). `make DUCKDB=bundled ...`
# compiles DuckDB from source instead (self-contained, ~40 minutes on 2 cores the first time).

SHELL := /bin/bash
CARGO ?= cargo
DUCKDB ?= prebuilt
PORT ?= 8080
DATA_DIR ?= .data

ifeq ($(DUCKDB),bundled)
  LOCAL_FEATURES := --no-default-features --features duckdb-bundled
  DUCKDB_DEP :=
else
  LOCAL_FEATURES :=
  DUCKDB_DEP := duckdb-lib
endif

# The six Cloud Run services: built without DuckDB.
FUNCTIONS := bootstrap onboard integrations pricing pipelines-run scheduler-tick
FUNCTION_PKGS := $(addprefix -p convergence-,$(FUNCTIONS))

.PHONY: help run test build build-functions build-local bench fmt fmt-check lint duckdb-lib clean images deploy

help:
	@echo "make run      build and start convergence-local on PORT=$(PORT) (data in DATA_DIR=$(DATA_DIR))"
	@echo "make test     everything CI runs"
	@echo "make build    release binaries: the six Cloud Run functions and convergence-local"
	@echo "make bench    start-up, memory and latency benchmarks (docs/BENCHMARKS.md)"
	@echo "make images   the six Cloud Run images with buildah, no Docker engine: convergence-<function>:<IMAGE_TAG>"
	@echo "              (IMAGE_TAG defaults to the git short sha; FUNCTIONS=\"onboard ...\" for a subset; sizes in docs/BENCHMARKS.md)"
	@echo "make fmt | fmt-check | lint"
	@echo "make deploy TFVARS=terraform/prod.tfvars STATE_BUCKET=<bucket>   images, push, terraform apply, bootstrap (README \"Deploy\"; DRY_RUN=1 prints it)"

duckdb-lib:
	@./scripts/fetch-duckdb.sh

run: $(DUCKDB_DEP)
	PORT=$(PORT) DATA_DIR=$(DATA_DIR) $(CARGO) run -q -p convergence-local $(LOCAL_FEATURES)

# The BigQuery tests run against the bqemulator package (a Python venv in .venv/, made on first
# use); scripts/with-bqemulator.sh starts it around the run and stops it after. The image test
# (tests/api/images.rs) packs release binaries: they are built first, not while tests share the cores.
test: $(DUCKDB_DEP)
	$(CARGO) build $(FUNCTION_PKGS)
	$(CARGO) build --release $(FUNCTION_PKGS)
	./scripts/with-bqemulator.sh $(CARGO) test --workspace $(LOCAL_FEATURES) --no-fail-fast

build: build-functions build-local

build-functions:
	$(CARGO) build --release $(FUNCTION_PKGS)

build-local: $(DUCKDB_DEP)
	$(CARGO) build --release -p convergence-local $(LOCAL_FEATURES)

# The Dockerfile's final stage, assembled from the release binaries (scripts/images.sh): no
# Docker engine or base image needed; buildah (a Debian package) is installed when missing.
images:
	CARGO=$(CARGO) IMAGE_TAG=$(IMAGE_TAG) ./scripts/images.sh $(FUNCTIONS)

bench: $(DUCKDB_DEP)
	./scripts/bench.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint: $(DUCKDB_DEP)
	$(CARGO) clippy --workspace --all-targets $(LOCAL_FEATURES) -- -D warnings
	$(CARGO) clippy $(FUNCTION_PKGS) -- -D warnings

# scripts/deploy.sh: build and push the images, apply Terraform with image_tag = the commit,
# bootstrap. STATE_BUCKET, IMAGE_TAG, AUTO_APPROVE and DRY_RUN pass through the environment.
deploy:
	@test -n "$(TFVARS)" || { echo "make deploy: set TFVARS to your environment's .tfvars (see README \"Deploy\")" >&2; exit 2; }
	./scripts/deploy.sh $(TFVARS)

clean:
	$(CARGO) clean
