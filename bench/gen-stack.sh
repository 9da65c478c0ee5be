#!/usr/bin/env bash
# Prints a Compose file with N services in the shape of a real stack: a
# database with a health check, services that depend on it, anchors and merge
# keys, interpolated variables, ports, volumes, labels, health checks.
# Usage: bench/gen-stack.sh N
set -euo pipefail
n=${1:-50}
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
HEAD
for i in $(seq 2 "$n"); do
  cat <<SVC
  svc$i:
    <<: *common
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "exec httpd -f -p 8080 -h /"]
    environment:
      DEPLOYMENT_ENV: \${DEPLOYMENT_ENV:-dev}
      SERVICE_INDEX: "$i"
      DATABASE_URL: postgres://postgres:\${DB_PASSWORD}@db:5432/postgres
    ports:
      - "127.0.0.1:$((20000 + i)):8080"
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1
      interval: 10s
      timeout: 3s
      retries: 3
SVC
done
cat <<'TAIL'
volumes:
  db-data:
TAIL
