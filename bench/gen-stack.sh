#!/usr/bin/env bash
# Prints a Compose file with N services in the shape of a real stack: a
# database with a health check, services that depend on it, anchors and merge
# keys, interpolated variables, ports, volumes, labels, health checks.
#
# Usage: bench/gen-stack.sh N [--runnable [HEALTH_INTERVAL [FAST]]]
#
# --runnable: a stack that really runs on an offline engine, many times side by
# side (bench/reconcile.sh): every service is the offline busybox image, the
# "db" too (httpd with a 2 s health check, still gating the others with
# `condition: service_healthy`), `init: true` (so a stop is quick), and nothing
# publishes a host port. The other services' health checks run every
# HEALTH_INTERVAL (default 60s), service svcFAST's every 2 s. Each probe is an
# exec that costs tens of ms of CPU (about 65 ms measured here, on
# fuse-overlayfs): 100 services probed every 5 s kept 2 cores 60-80% busy and
# swamped the timings, hence long intervals and one fast service, the one a
# benchmark changes (the engine's first probe comes one interval after start,
# and a recreate waits for it).
set -euo pipefail
n=${1:-50}
runnable=false
interval=60s
fast=
if [ "${2:-}" = --runnable ]; then
  runnable=true
  interval=${3:-60s}
  fast=${4:-}
fi
cat <<'HEAD'
x-common: &common
  restart: unless-stopped
  labels:
    team: bench
  logging:
    driver: json-file
    options:
      max-size: 10m

services:
HEAD
if $runnable; then
  cat <<'DB'
  db:
    <<: *common
    image: plimsoll-example/busybox:1
    init: true
    command: ["sh", "-c", "mkdir -p /data/www && echo ok > /data/www/health && exec httpd -f -p 5432 -h /data/www"]
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD}
    volumes:
      - db-data:/data
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5432/health"]
      interval: 2s
      timeout: 3s
      retries: 30
DB
else
  cat <<'DB'
  db:
    <<: *common
    image: plimsoll-example/postgres:15
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD}
    volumes:
      - db-data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres"]
      interval: 2s
      timeout: 5s
      retries: 30
DB
fi
cmd='["sh", "-c", "exec httpd -f -p 8080 -h /"]'
# busybox httpd answers 404 without an index: the runnable stack serves one.
init=
# docker-init as PID 1 passes SIGTERM on: a stop takes milliseconds, not 10 s.
$runnable && init=$'\n    init: true'
$runnable && cmd='["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]'
for i in $(seq 2 "$n"); do
  cat <<SVC
  svc$i:
    <<: *common
    image: plimsoll-example/busybox:1
    command: $cmd${init}
    environment:
      DEPLOYMENT_ENV: \${DEPLOYMENT_ENV:-dev}
      SERVICE_INDEX: "$i"
      DATABASE_URL: postgres://postgres:\${DB_PASSWORD}@db:5432/postgres
SVC
  if ! $runnable; then
    cat <<SVC
    ports:
      - "127.0.0.1:$((20000 + i)):8080"
SVC
  fi
  cat <<SVC
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1
      interval: $(if ! $runnable; then echo 10s; elif [ "$i" = "$fast" ]; then echo 2s; else echo "$interval"; fi)
      timeout: 3s
      retries: 3
SVC
done
cat <<'TAIL'
volumes:
  db-data:
TAIL
