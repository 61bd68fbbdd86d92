#!/usr/bin/env bash
# Builds the Cloud Run images where no Docker engine runs (`make images`):
#   scripts/images.sh [function...]     (default: all six; IMAGE_TAG defaults to the git short sha)
# Base images cannot be pulled here, so each image is the Dockerfile's final stage assembled FROM
# scratch out of this machine's release build: the binary and the shared libraries it loads, the
# dynamic loader, configs/, the CA certificates, /etc/passwd and /etc/group with the user nonroot
# (65532, as in distroless), /tmp. buildah runs daemonless: vfs storage, chroot isolation. The
# images are named convergence-<function>:<tag> in buildah's storage (`buildah --storage-driver vfs
# images`); a rebuild replaces the image of the same name and tag.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

all_functions=(bootstrap onboard integrations pricing pipelines-run scheduler-tick)
if [ $# -gt 0 ]; then
  functions=("$@")
else
  functions=("${all_functions[@]}")
fi
for function in "${functions[@]}"; do
  if [[ " ${all_functions[*]} " != *" $function "* ]]; then
    echo "images: unknown function '$function' (one of: ${all_functions[*]})" >&2
    exit 2
  fi
done

revision="$(git rev-parse HEAD)"
tag="${IMAGE_TAG:-$(git rev-parse --short HEAD)}"
cargo="${CARGO:-cargo}"

# The Dockerfile's final stage, in the terms of this layout: keep the two in step
# (tests/api/images.rs compares an image built here with the Dockerfile).
binary_path=/usr/local/bin/convergence
workdir=/app
user=65532:65532

buildah_bin="$("$root/scripts/debian-tool.sh" buildah buildah)"
buildah() { "$buildah_bin" --storage-driver vfs "$@"; }

# All six, whichever are asked for, as `make build-functions` builds them (and without DuckDB):
# cargo unifies the features of the packages built together, so building one alone would rebuild
# most dependencies, and the next build of all six would rebuild them again.
packages=()
for function in "${all_functions[@]}"; do
  packages+=(-p "convergence-$function")
done
"$cargo" build --release --locked "${packages[@]}"
target_dir="$("$cargo" metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

stage="$(mktemp -d "${TMPDIR:-/tmp}/convergence-images.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

# Copies a host file to the same path under the root file system $1, following symlinks.
copy_host_file() {
  mkdir -p "$1$(dirname "$2")"
  cp -L "$2" "$1$2"
}

for function in "${functions[@]}"; do
  binary="$target_dir/release/convergence-$function"
  context="$stage/$function"
  rootfs="$context/rootfs"
  mkdir -p "$rootfs$workdir" "$rootfs/etc/ssl/certs" "$rootfs/usr/local/bin" "$context/home/nonroot"
  install -m 0755 "$binary" "$rootfs$binary_path"

  # The libraries the binary loads and the loader named in it (`ldd` lists both; the vDSO has no
  # file), as found without LD_LIBRARY_PATH, which the image does not set.
  libraries="$(env -u LD_LIBRARY_PATH ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')"
  if [ -z "$libraries" ]; then
    echo "images: ldd found no shared libraries for $binary" >&2
    exit 1
  fi
  while read -r library; do
    copy_host_file "$rootfs" "$library"
  done <<<"$libraries"

  cp -R configs "$rootfs$workdir/configs"
  copy_host_file "$rootfs" /etc/ssl/certs/ca-certificates.crt
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' \
    >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$rootfs/etc/group"
  printf '%s\n' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  mkdir -m 1777 "$rootfs/tmp"
  chmod -R u=rwX,go=rX "$rootfs$workdir/configs"

  cat >"$context/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 home/ /home/
LABEL org.opencontainers.image.title="convergence-$function" \\
      org.opencontainers.image.description="Convergence $function: one Cloud Run service" \\
      org.opencontainers.image.revision="$revision"
WORKDIR $workdir
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PORT=8080 \\
    CONFIGS_DIR=$workdir/configs
EXPOSE 8080
USER $user
STOPSIGNAL SIGTERM
ENTRYPOINT ["$binary_path"]
EOF

  image="localhost/convergence-$function:$tag"
  previous="$(buildah images --noheading --quiet "$image" 2>/dev/null || true)"
  buildah bud --isolation chroot --quiet --tag "$image" --file "$context/Containerfile" "$context" >/dev/null
  current="$(buildah images --noheading --quiet "$image")"
  # The image this one replaced lost its name: remove it, so rebuilds do not pile up (unless a
  # working container still uses it).
  if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true
  fi
  echo "$image $current"
done
