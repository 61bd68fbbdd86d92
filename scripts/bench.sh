#!/usr/bin/env bash
# `make bench`: builds the release binaries and the benchmark driver, then measures start-up
# (exec → first 200 on /health), RSS, and authenticated API latency/throughput on loopback.
# Results go to stdout as Markdown tables; docs/BENCHMARKS.md keeps the latest run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
# The function is built with the embedded backends so it can start without GCP; the Cloud Run
# build (no DuckDB) is measured against the emulators once the GCP backends exist.
cargo build --release -q -p convergence-local -p convergence-bootstrap --features convergence-bootstrap/duckdb
cargo build --release -q -p convergence-tests --bin convergence-bench
echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$target/release/convergence-bench" "$target" "${RUNS:-20}" "${REQUESTS:-20000}"
