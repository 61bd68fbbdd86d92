#!/usr/bin/env bash
# Runs a command with the BigQuery emulator up: starts it in a temp state dir, exports its URL as
# CONVERGENCE_BIGQUERY_EMULATOR (what the BigQuery tests read), runs the command, and always stops
# the emulator afterwards. `make test` wraps `cargo test` with it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$(mktemp -d "${TMPDIR:-/tmp}/convergence-bq.XXXXXX")"
cleanup() {
  "$root/scripts/bqemulator.sh" stop "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
url="$("$root/scripts/bqemulator.sh" start "$state")"
echo "BigQuery emulator: $url" >&2
CONVERGENCE_BIGQUERY_EMULATOR="$url" "$@"
