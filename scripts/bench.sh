#!/usr/bin/env bash
# `make bench`: builds the release binaries and the benchmark driver, then measures start-up
# (exec → first 200 on /health), RSS, authenticated API latency/throughput on loopback, the
# scheduler tick over 10,000 organizations, the warehouse statements of one run, and one day of
# 1,000,000 Cloud Billing export rows through gcp.bq_etl.
# Results go to stdout as Markdown tables; docs/BENCHMARKS.md keeps the latest run.
# BENCH_ONLY=pipeline,cost (sections: binaries, startup, cost, pipeline, gcp, load, tick, statements)
# runs only those; BENCH_PIPELINE_RUNS=N sets how many end-to-end pipeline runs are made
# (default 5); BENCH_TICK_ORGS=N how many organizations the tick covers (default 10,000);
# BENCH_GCP_ROWS=N the billing export rows of the gcp.bq_etl day (default 1,000,000).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
# Separate builds: the Cloud Run functions without DuckDB, convergence-local with it (one cargo
# invocation would unify features and link DuckDB into the functions).
cargo build --release -q -p convergence-bootstrap -p convergence-onboard -p convergence-integrations \
  -p convergence-pricing -p convergence-pipelines-run -p convergence-scheduler-tick
cargo build --release -q -p convergence-local
cargo build --release -q -p convergence-tests --bin convergence-bench
echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$root/scripts/with-bqemulator.sh" "$target/release/convergence-bench" "$target" "${RUNS:-20}" "${REQUESTS:-20000}"
