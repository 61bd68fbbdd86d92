"""Start the bqemulator (PyPI `bqemulator==1.4.0`) fully offline.

Usage (normally via scripts/bqemulator.sh):
    python bqemulator_launcher.py --port PORT --data-dir DIR [--project test-project]

bqemulator tries to reach extensions.duckdb.org at start-up:
  * DuckDBEngine._load_spatial runs `INSTALL spatial; LOAD spatial` and aborts start-up when that
    fails (GEOGRAPHY support; the project does not use GEOGRAPHY) -> replaced by a no-op;
  * DuckDBEngine._load_format_extensions runs `INSTALL avro` (best effort, Avro load jobs) ->
    switched off with BQEMU_ENABLE_FORMAT_EXTENSIONS=false;
  * DuckDB itself auto-installs "known" extensions on first use of one of their functions
    (autoinstall_known_extensions defaults to true) -> switched off on the engine's connection.
Tracing (OTLP export) is off unless BQEMU_TRACING_ENABLED and BQEMU_OTLP_ENDPOINT are set; they are
forced off here. Everything else runs through the package's own `bqemulator start` click command.
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="REST port")
    parser.add_argument("--grpc-port", type=int, default=0, help="gRPC port (0 = any free port)")
    parser.add_argument("--data-dir", help="persistent state directory (omit for in-memory)")
    parser.add_argument("--project", default="test-project", help="default project id")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()

    # Settings are read from BQEMU_* variables; CLI flags below take precedence over them.
    os.environ["BQEMU_ENABLE_FORMAT_EXTENSIONS"] = "false"
    os.environ["BQEMU_TRACING_ENABLED"] = "false"
    os.environ.pop("BQEMU_OTLP_ENDPOINT", None)
    os.environ["BQEMU_ADMIN_ENABLED"] = "false"
    if args.data_dir:
        uploads = os.path.join(os.path.abspath(args.data_dir), "uploads")
        os.makedirs(uploads, exist_ok=True)
        os.environ["BQEMU_UPLOAD_STAGING_DIR"] = uploads

    from bqemulator.storage.engine import DuckDBEngine

    def _no_spatial(self: DuckDBEngine) -> None:  # GEOGRAPHY is not used; avoid the download
        return None

    original_pragmas = DuckDBEngine._apply_session_pragmas

    def _pragmas_offline(self: DuckDBEngine) -> None:
        original_pragmas(self)
        self._connection.execute("SET autoinstall_known_extensions = false")
        self._connection.execute("SET allow_community_extensions = false")

    DuckDBEngine._load_spatial = _no_spatial  # type: ignore[method-assign]
    DuckDBEngine._apply_session_pragmas = _pragmas_offline  # type: ignore[method-assign]

    from bqemulator.cli import main as cli_main

    argv = [
        "start",
        "--rest-host", args.host,
        "--rest-port", str(args.port),
        "--grpc-host", args.host,
        "--grpc-port", str(args.grpc_port),
        "--project", args.project,
        "--log-level", args.log_level,
        "--log-format", "json",
        "--no-admin",
    ]
    if args.data_dir:
        argv += ["--persistent", "--data-dir", os.path.abspath(args.data_dir)]
    else:
        argv += ["--ephemeral"]
    cli_main(argv, prog_name="bqemulator", standalone_mode=True)


if __name__ == "__main__":
    main()
