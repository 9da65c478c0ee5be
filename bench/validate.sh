#!/usr/bin/env bash
# Benchmark: `plimsoll validate` vs `docker compose config -q` on a generated
# 50-service stack (DESIGN.md "Measured goals": plimsoll at least 5x faster).
#
# Usage: bench/validate.sh [SERVICES] [RUNS]     (defaults: 50 services, 30 runs)
# Prints the median wall time of each and the ratio. Not a test: the machine is
# shared and noisy, so read the numbers, do not assert on them.
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-50}
runs=${2:-30}

compose=${PLIMSOLL_COMPOSE_BIN:-$PWD/.tools/docker-compose}
[ -x "$compose" ] || scripts/fetch-compose.sh >/dev/null
cargo build --release --quiet
plimsoll=$PWD/target/release/plimsoll

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
stack=$dir/bench
mkdir -p "$stack"
bench/gen-stack.sh "$services" > "$stack/compose.yaml"
printf 'DEPLOYMENT_ENV=bench\nDB_PASSWORD=bench-password\n' > "$stack/.env"

# median_ms CMD...: runs CMD $runs times, prints the median wall time in ms.
median_ms() {
  local times=() t0 t1
  for _ in $(seq "$runs"); do
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f\n", m/1000}'
}

"$plimsoll" validate "$stack" >/dev/null
"$compose" --project-directory "$stack" -f "$stack/compose.yaml" config -q

p=$(median_ms "$plimsoll" validate "$stack")
c=$(median_ms "$compose" --project-directory "$stack" -f "$stack/compose.yaml" config -q)
echo "validate, $services services, median of $runs runs"
printf '  plimsoll validate          %8.1f ms\n' "$p"
printf '  docker compose config -q   %8.1f ms  (%s)\n' "$c" "$("$compose" version --short)"
awk -v p="$p" -v c="$c" 'BEGIN { printf "  ratio compose/plimsoll     %8.1fx  (goal >= 5x)\n", c/p }'
