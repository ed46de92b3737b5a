#!/usr/bin/env bash
# `make images` (build part): every target of worker_images/Dockerfile with podman (buildah
# inside), no Docker daemon. Tags localhost/aipp-<target>. Layers are cached in podman's storage,
# so a second run rebuilds only what changed.
#
#   IMAGES_TARGETS   targets to build (default: api worker upload-lambda)
#   IMAGES_ISOLATION     podman build --isolation (default chroot: works inside containers too)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
read -r -a targets <<<"${IMAGES_TARGETS:-api worker upload-lambda}"

args=(--isolation "${IMAGES_ISOLATION:-chroot}" --format docker --layers -f worker_images/Dockerfile)

base=$(bash tools/images/base.sh)
[[ -z $base ]] || args+=(--build-arg "BASE_IMAGE=$base")

# The RDS CA bundle: verified when present, fetched when not; without it, a local-only image.
bundle=worker_images/certs/rds-global-bundle.pem
if [[ -s $bundle ]] && "$PY" -m tools.images.rds_ca verify "$bundle"; then
  build=release
elif [[ -s $bundle ]]; then
  echo "error: $bundle fails verification (above); delete it or run 'make rds-ca'" >&2
  exit 1
elif "$PY" -m tools.images.rds_ca fetch; then
  build=release
else
  build=local-only
  echo "==> WARNING: no RDS CA bundle (above): building LOCAL-ONLY images without" \
       "/opt/aipp/certs/rds-global-bundle.pem (label com.aipp.build=local-only); never deploy them" >&2
fi
args+=(--build-arg "AIPP_BUILD=$build")

# The machine's CA bundle for pip inside the build (a TLS-inspecting proxy), as a build secret.
for ca in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [[ -n $ca && -s $ca ]]; then args+=(--secret "id=pip-ca,src=$ca"); break; fi
done

for target in "${targets[@]}"; do
  echo "==> building localhost/aipp-$target ($build)"
  start=$SECONDS
  log=$(mktemp)
  if ! podman build "${args[@]}" --target "$target" -t "localhost/aipp-$target" . >"$log" 2>&1; then
    echo "error: building $target failed; last lines (full log: $log):" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  rm -f "$log"
  echo "    $(podman image inspect --format '{{.Id}}' "localhost/aipp-$target" | cut -c1-12)" \
       "$(podman image inspect --format '{{.Size}}' "localhost/aipp-$target" | numfmt --to=iec)B" \
       "in $((SECONDS - start)) s"
done
