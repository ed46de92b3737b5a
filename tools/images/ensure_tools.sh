#!/usr/bin/env bash
# Make sure podman and buildah (Debian's packages: build and run images without a Docker daemon)
# are installed; debootstrap too, for bootstrapping the base where no registry is reachable.
# Idempotent; prints one line.
set -euo pipefail
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v runc >/dev/null 2>&1 || command -v crun >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -eq 0 ]; then
  echo "==> $(podman --version), $(buildah --version | cut -d' ' -f1-3), debootstrap: installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: make images needs ${need[*]} (podman, buildah, runc and debootstrap from your distribution)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "==> installing ${need[*]} (Debian packages; about a minute)"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" \
     containernetworking-plugins uidmap; } >"$log" 2>&1; then
  echo "error: apt-get install ${need[*]} failed; last lines:" >&2
  tail -n 5 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "==> installed $(podman --version), $(buildah --version | cut -d' ' -f1-3), debootstrap"
