#!/usr/bin/env bash
# Makes sure a command from a Debian package is installed, installing the package when missing:
#   scripts/debian-tool.sh <package> <command>    (prints the command's path)
# A fresh machine has neither buildah nor shellcheck; `make images`, `make test` and
# `make deploy` call this before using them. Installing needs root (or sudo without a password).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 <debian-package> <command>" >&2
  exit 2
fi
package="$1"
command="$2"
if ! command -v "$command" >/dev/null 2>&1; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "debian-tool: $command is missing and installing $package needs root: apt-get install $package" >&2
      exit 1
    fi
    sudo=(sudo -n)
  fi
  echo "debian-tool: installing $package (for $command)" >&2
  # Concurrent callers wait on apt's own lock rather than failing.
  if ! "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$package" >&2; then
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -q >&2
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$package" >&2
  fi
fi
command -v "$command"
