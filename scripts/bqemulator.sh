#!/usr/bin/env bash
# Local BigQuery REST emulator for tests: PyPI `bqemulator` (DuckDB-backed), run offline through
# scripts/bqemulator_launcher.py. Notes on what it supports: docs/bqemulator-notes.md.
#
#   scripts/bqemulator.sh start <state-dir>   # prints exactly one line: http://127.0.0.1:<port>
#   scripts/bqemulator.sh stop  <state-dir>
#
# start: creates <repo>/.venv/bqemulator on first use (pinned versions below), picks a free loopback
# port, starts the emulator in the background with its DuckDB file in <state-dir>, its log in
# <state-dir>/bqemulator.log and its pid in <state-dir>/bqemulator.pid, and waits (60 s at most)
# until it answers HTTP. The default project id is `test-project`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv/bqemulator"
launcher="$root/scripts/bqemulator_launcher.py"
python="${PYTHON:-python3}"

# Every package pinned (pip freeze of a working install, Python 3.11, 2026-06) so that the
# emulator's behaviour does not drift under the tests. Changing this list rebuilds the venv.
constraints="$(cat <<'PINS'
bqemulator==1.4.0
alembic==1.20.1
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
asgiref==3.13.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cryptography==50.0.2
duckdb==2.0.1
fastapi==0.165.0
fastavro==1.13.1
google-api-core==2.44.0
google-auth==2.63.0
google-cloud-bigquery-storage==2.43.0
googleapis-common-protos==1.76.0
grpcio==1.85.3
grpcio-health-checking==1.80.1
grpcio-status==1.85.3
grpcio-tools==1.80.1
h11==0.16.0
httpcore==1.0.9
httptools==0.9.0
httpx==0.28.1
idna==3.20
Mako==1.4.3
MarkupSafe==3.0.4
numpy==2.4.6
opentelemetry-api==1.45.2
opentelemetry-exporter-http-transport==0.66b2
opentelemetry-exporter-otlp==1.45.2
opentelemetry-exporter-otlp-common==0.66b2
opentelemetry-exporter-otlp-proto-common==1.45.2
opentelemetry-exporter-otlp-proto-grpc==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
opentelemetry-instrumentation==0.66b2
opentelemetry-instrumentation-asgi==0.66b2
opentelemetry-instrumentation-fastapi==0.66b2
opentelemetry-instrumentation-grpc==0.66b2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions==0.66b2
opentelemetry-util-http==0.66b2
orjson==3.13.0
packaging==26.4
prometheus_client==0.26.0
proto-plus==1.29.0
protobuf==6.33.6
pyarrow==26.0.1
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
pydantic==2.14.4
pydantic-settings==2.16.3
pydantic_core==2.50.5
PyJWT==2.15.1
python-dotenv==1.2.4
pytz==2026.6
PyYAML==6.0.4
requests==2.34.2
SQLAlchemy==2.1.9
sqlglot==30.11.0
starlette==1.10.0
structlog==26.1.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.54.0
uvloop==0.23.0
watchfiles==1.3.0
websockets==17.4
wrapt==2.5.2
PINS
)"

usage() {
  echo "usage: $0 start|stop <state-dir>" >&2
  exit 2
}

ensure_venv() {
  local stamp="$venv/.pins"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$constraints" ]; then
    return 0
  fi
  echo "bqemulator: creating $venv (one-time, ~30 s)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  local req
  req="$(mktemp)"
  printf '%s\n' "$constraints" >"$req"
  # numpy is an undeclared runtime dependency of bqemulator 1.4.0; it is in the pinned list.
  if ! "$venv/bin/pip" install -q --disable-pip-version-check --no-input -r "$req" >&2; then
    rm -f "$req"
    rm -rf "$venv"
    echo "bqemulator: pip install failed" >&2
    exit 1
  fi
  rm -f "$req"
  printf '%s' "$constraints" >"$stamp"
}

free_port() {
  "$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

is_running() { # <pid>
  kill -0 "$1" 2>/dev/null
}

start() {
  local state="$1"
  mkdir -p "$state"
  state="$(cd "$state" && pwd)"
  local pidfile="$state/bqemulator.pid" log="$state/bqemulator.log"
  if [ -f "$pidfile" ] && is_running "$(cat "$pidfile")"; then
    echo "bqemulator: already running with pid $(cat "$pidfile") (state $state); stop it first" >&2
    exit 1
  fi
  if command -v flock >/dev/null 2>&1; then
    mkdir -p "$root/.venv"
    exec 9>"$root/.venv/.bqemulator.lock"
    flock 9
    ensure_venv
    flock -u 9
    exec 9>&-
  else
    ensure_venv
  fi

  local port
  port="$(free_port)"
  local url="http://127.0.0.1:$port"
  # cd into the state dir so nothing in the caller's cwd (e.g. a .bqemu.toml) is picked up.
  (cd "$state" && exec "$venv/bin/python" "$launcher" \
    --host 127.0.0.1 --port "$port" --data-dir "$state" --project test-project \
    </dev/null >"$log" 2>&1) &
  local pid=$!
  echo "$pid" >"$pidfile"

  local deadline=$((SECONDS + 60))
  while :; do
    if "$python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=2).read()' "$url" 2>/dev/null; then
      break
    fi
    if ! is_running "$pid"; then
      echo "bqemulator: exited during start-up; last lines of $log:" >&2
      tail -n 40 "$log" >&2 || true
      rm -f "$pidfile"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "bqemulator: no HTTP answer on $url within 60 s; last lines of $log:" >&2
      tail -n 40 "$log" >&2 || true
      kill "$pid" 2>/dev/null || true
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.3
  done
  echo "$url"
}

stop() {
  local state="$1" pidfile="$1/bqemulator.pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid="$(cat "$pidfile")"
  if is_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      is_running "$pid" || break
      sleep 0.2
    done
    if is_running "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

[ $# -eq 2 ] || usage
case "$1" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
