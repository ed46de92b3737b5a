#!/usr/bin/env bash
# `make locks`: regenerate every hash lock from its human-edited, pinned requirements file.
#   worker_images/requirements.txt         -> worker_images/requirements.lock         (api)
#   worker_images/requirements-worker.txt  -> worker_images/requirements-worker.lock  (worker)
#   worker_images/requirements-lambda.txt  -> worker_images/requirements-lambda.lock  (upload-lambda)
#   tools/images/requirements-scan.txt     -> tools/images/requirements-scan.lock     (`make scan`)
# Locks are resolved for Python 3.11 on linux/amd64 (Debian bookworm's python3 in the images) and
# list the sha256 of every file PyPI has for each release, so that pip --require-hashes accepts
# exactly those files.
#
# `lock.sh check` (run by `make images` and `make lint`) fails when a pin of a requirements file
# is missing from its lock or differs there; it needs no network.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-.venv/bin/uv}
mode=${1:-write}
PAIRS=(
  worker_images/requirements.txt:worker_images/requirements.lock
  worker_images/requirements-worker.txt:worker_images/requirements-worker.lock
  worker_images/requirements-lambda.txt:worker_images/requirements-lambda.lock
  tools/images/requirements-scan.txt:tools/images/requirements-scan.lock
)

pins() {  # the name==version lines of a requirements file and of the files it includes (-r)
  local file=$1 dir
  dir=$(dirname "$file")
  while read -r line; do
    case $line in
      -r\ *) pins "$dir/${line#-r }" ;;
      *==*) echo "${line%%[ ;#]*}" | tr '[:upper:]_' '[:lower:]-' ;;
    esac
  done < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$file")
}

status=0
for pair in "${PAIRS[@]}"; do
  src=${pair%%:*} lock=${pair##*:}
  if [[ $mode == check ]]; then
    [[ -f $lock ]] || { echo "error: $lock is missing: run 'make locks'" >&2; status=1; continue; }
    locked=$(grep -E '^[A-Za-z0-9_.-]+==' "$lock" | sed 's/ .*//' | tr '[:upper:]_' '[:lower:]-')
    for pin in $(pins "$src" | sort -u); do
      grep -qxF "$pin" <<<"$locked" || { echo "error: $lock does not lock $pin from $src: run 'make locks'" >&2; status=1; }
    done
  else
    "$UV" pip compile --quiet --no-config --generate-hashes --python-version 3.11 \
      --python-platform x86_64-manylinux_2_36 --index-url https://pypi.org/simple \
      --custom-compile-command "make locks" "$src" -o "$lock"
    echo "==> $lock: $(grep -cE '^[A-Za-z0-9_.-]+==' "$lock") packages from $src"
  fi
done
exit $status
