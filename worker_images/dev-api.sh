#!/usr/bin/env bash
# `make dev-api`: the task API on http://127.0.0.1:8000 against local PostgreSQL and Redis, with S3
# and SQS on moto's server (started here, stopped on exit). Not part of any image.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MOTO_PORT=${MOTO_PORT:-5000}
API_PORT=${API_PORT:-8000}

export PYTHONPATH=.:worker_images
export AIPP_DATABASE_URL=${AIPP_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/aipp}
export AIPP_REDIS_URL=${AIPP_REDIS_URL:-redis://127.0.0.1:6379/0}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:$MOTO_PORT}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AIPP_AUDIO_BUCKET=${AIPP_AUDIO_BUCKET:-aipp-audio-local}
export AIPP_STT_QUEUE_URL=${AIPP_STT_QUEUE_URL:-$AWS_ENDPOINT_URL/123456789012/aipp-tasks}
export AIPP_LLM_QUEUE_URL=${AIPP_LLM_QUEUE_URL:-$AIPP_STT_QUEUE_URL}

moto_pid=""
worker_pid=""
events_pid=""
cleanup() {
  [[ -n $events_pid ]] && { kill "$events_pid" 2>/dev/null; wait "$events_pid" 2>/dev/null; } || true
  [[ -n $worker_pid ]] && { kill "$worker_pid" 2>/dev/null; wait "$worker_pid" 2>/dev/null; } || true
  [[ -n $moto_pid ]] && kill "$moto_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if ! (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null; then
  echo "==> starting moto's server (S3, SQS) on 127.0.0.1:$MOTO_PORT"
  "$PY" -m aipp.dev.moto_server -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null && break; sleep 0.2; done
fi
"$PY" -m aipp.admin init-local-aws
"$PY" -m aipp.admin migrate --create-database
# `make dev` (WITH_WORKER=1): the queue worker too, with the local providers (no network), and the
# local stand-in for S3 event notifications.
if [[ ${WITH_WORKER:-0} == 1 ]]; then
  export AIPP_STT_PROVIDER=${AIPP_STT_PROVIDER:-pocketsphinx} AIPP_LLM_PROVIDER=${AIPP_LLM_PROVIDER:-extractive}
  export AIPP_WORKER_HEARTBEAT_FILE=${AIPP_WORKER_HEARTBEAT_FILE:-}
  export AIPP_WORKER_SHUTDOWN_GRACE_SECONDS=${AIPP_WORKER_SHUTDOWN_GRACE_SECONDS:-10}
  echo "==> worker: AIPP_STT_PROVIDER=$AIPP_STT_PROVIDER AIPP_LLM_PROVIDER=$AIPP_LLM_PROVIDER"
  "$PY" -m aipp.worker &
  worker_pid=$!
  # moto sends no S3 events: this stands in for S3 -> EventBridge -> the upload Lambda, so that
  # presigned PUTs get queued too (it calls lambda_src/upload_handler for each new upload).
  echo "==> S3 events: uploads/ in $AIPP_AUDIO_BUCKET -> upload_handler (polling moto)"
  PYTHONPATH=.:worker_images:lambda_src "$PY" -m aipp.dev.s3_events &
  events_pid=$!
fi
echo "==> task API on http://127.0.0.1:$API_PORT (docs at /docs); Ctrl-C stops it"
echo "    an API key: make api-key TENANT=<name>"
"$PY" -m uvicorn aipp.api.main:app --host 127.0.0.1 --port "$API_PORT" --no-access-log
