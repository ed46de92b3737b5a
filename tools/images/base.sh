#!/usr/bin/env bash
# The base image `make images` builds on. Prints one line on stdout: empty when the Dockerfile's
# pinned base (debian:bookworm-...-slim@sha256:...) is present or can be pulled, otherwise the
# name of a local base bootstrapped from Debian's archive with debootstrap, to pass as
# --build-arg BASE_IMAGE. Progress goes to stderr.
#
# The local base is cached in podman's storage and rebuilt when it is older than
# IMAGES_BASE_MAX_AGE_DAYS (default 30; Debian's security updates arrive through `apt-get install`
# in the Dockerfile either way) or when IMAGES_BASE_REFRESH=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

LOCAL_BASE=localhost/aipp-debian:bookworm-local
MIRROR=${IMAGES_DEBIAN_MIRROR:-http://deb.debian.org/debian}
MAX_AGE_DAYS=${IMAGES_BASE_MAX_AGE_DAYS:-30}
PINNED=$(sed -n 's/^ARG BASE_IMAGE=//p' worker_images/Dockerfile)
[[ -n $PINNED ]] || { echo "error: no 'ARG BASE_IMAGE=' in worker_images/Dockerfile" >&2; exit 1; }

say() { echo "==> $*" >&2; }

if podman image exists "$PINNED"; then
  say "base: $PINNED (present)"
  echo ""
  exit 0
fi
if [[ ${IMAGES_BASE_REFRESH:-0} != 1 ]] && podman image exists "$LOCAL_BASE"; then
  created=$(podman image inspect --format '{{.Created.Unix}}' "$LOCAL_BASE")
  age_days=$(( ($(date +%s) - created) / 86400 ))
  if (( age_days < MAX_AGE_DAYS )); then
    say "base: $LOCAL_BASE (bootstrapped locally ${age_days} d ago; the pinned base cannot be pulled here)"
    echo "$LOCAL_BASE"
    exit 0
  fi
  say "base: $LOCAL_BASE is ${age_days} days old; bootstrapping it again"
fi
# A registry that is not reachable answers at once (no DNS) or not at all: bound the wait.
say "base: pulling $PINNED"
if timeout "${IMAGES_PULL_TIMEOUT:-120}" podman pull --quiet "$PINNED" >/dev/null 2>&1; then
  say "base: $PINNED (pulled)"
  echo ""
  exit 0
fi

say "base: cannot pull $PINNED; bootstrapping Debian bookworm from $MIRROR (about 2-3 minutes)"
if [[ $(id -u) -ne 0 ]]; then
  echo "error: bootstrapping the base needs root (debootstrap); run 'sudo make images', or make $PINNED pullable" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/aipp-debian.XXXXXX)
trap 'rm -rf "$root"' EXIT
log=$root.log
if ! debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$log" 2>&1; then
  echo "error: debootstrap failed; last lines of $log:" >&2
  tail -n 5 "$log" >&2
  exit 1
fi
rm -f "$log"
# The same package sources as the official image: the release, its updates and security.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# Slim like the official -slim image: no documentation, manual pages or translations, now or
# from packages installed later (dpkg path filters).
cat >"$root/etc/dpkg/dpkg.cfg.d/aipp-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
SLIM
# And, like it, apt keeps no package caches in the image's layers.
cat >"$root/etc/apt/apt.conf.d/aipp-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$root"/usr/share/{man,info,locale,groff,lintian}/*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
say "base: importing the bootstrapped root file system as $LOCAL_BASE"
tar --numeric-owner -C "$root" -c . | podman import \
  --change 'CMD ["bash"]' \
  --change "LABEL com.aipp.base=debootstrap-bookworm-minbase com.aipp.base.mirror=$MIRROR" \
  - "$LOCAL_BASE" >/dev/null
say "base: $LOCAL_BASE ready (local only: never pushed, never deployed)"
echo "$LOCAL_BASE"
