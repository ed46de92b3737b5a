#!/usr/bin/env bash
# Make sure the services the runtime tests talk to are listening on localhost; start them when not.
# Elsewhere, `docker compose up -d postgres redis` gives the same services.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 30); do listening "$port" && return 0; sleep 1; done
  echo "error: $name is not listening on 127.0.0.1:$port and could not be started" >&2
  return 1
}

if ! listening 5432; then
  echo "==> starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  fi
  wait_for PostgreSQL 5432
fi

if ! listening 6379; then
  echo "==> starting Redis"
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  wait_for Redis 6379
fi
echo "==> PostgreSQL :5432 and Redis :6379 are listening"
