#!/usr/bin/env bash
# `make scan`: checkov on every synthesized template (cdk.out/phase*-*/, the delivery pipeline's
# cdk.out/delivery/) and on the Dockerfile,
# with the skips and their reasons in .checkov.yaml; then, where trivy is installed (CI), the
# images `make images` built, for known vulnerabilities with a fix (HIGH, CRITICAL).
set -euo pipefail
cd "$(dirname "$0")/../.."
CHECKOV=${CHECKOV:-.venv-scan/bin/checkov}

templates=(cdk.out/phase*-*/*.template.json cdk.out/delivery/*.template.json)
[[ -e ${templates[0]} ]] || { echo "error: no templates in cdk.out/phase*-*/: run make synth" >&2; exit 1; }
echo "==> checkov: ${#templates[@]} templates and worker_images/Dockerfile (skips: .checkov.yaml)"
args=()
for t in "${templates[@]}" worker_images/Dockerfile; do args+=(-f "$t"); done
"$CHECKOV" --config-file .checkov.yaml "${args[@]}"

if command -v trivy >/dev/null 2>&1; then
  for target in api worker upload-lambda; do
    echo "==> trivy: localhost/aipp-$target"
    archive=$(mktemp --suffix=.tar)
    podman save --format docker-archive -o "$archive" "localhost/aipp-$target" >/dev/null
    trivy image --input "$archive" --scanners vuln --severity HIGH,CRITICAL --ignore-unfixed \
      --exit-code 1 --no-progress || { rm -f "$archive"; exit 1; }
    rm -f "$archive"
  done
else
  echo "==> image vulnerability scan skipped here: trivy is not installed (its scanner and database" \
       "come from the internet, not from PyPI, npm or Debian); CI runs it on every pull request"
fi
