#!/usr/bin/env bash
# Fetches DuckDB's official prebuilt libduckdb.so (published in the npm package
# @duckdb/node-bindings-linux-x64) into .cache/duckdb/<version>/, where .cargo/config.toml points
# DUCKDB_LIB_DIR. Version 1.5.6-r.1 pairs with the crate duckdb = "=1.10506.1".
set -euo pipefail
version="1.5.6-r.1"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/duckdb/$version"
[ -f "$dest/libduckdb.so" ] && exit 0
case "$(uname -m)" in
  x86_64) pkg="node-bindings-linux-x64" ;;
  aarch64) pkg="node-bindings-linux-arm64" ;;
  *) echo "no prebuilt libduckdb for $(uname -m); use DUCKDB=bundled" >&2; exit 1 ;;
esac
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
url="https://registry.npmjs.org/@duckdb/$pkg/-/$pkg-$version.tgz"
if command -v npm >/dev/null 2>&1; then
  (cd "$tmp" && npm pack --silent "@duckdb/$pkg@$version" >/dev/null)
else
  curl -fsSL "$url" -o "$tmp/$pkg-$version.tgz"
fi
tar -xzf "$tmp"/*.tgz -C "$tmp" package/libduckdb.so
mkdir -p "$dest"
mv "$tmp/package/libduckdb.so" "$dest/libduckdb.so"
echo "fetched libduckdb.so $version into $dest"
