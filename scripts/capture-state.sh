#!/usr/bin/env bash
# Captures `docker inspect` output of containers in each run state from this
# engine into tests/fixtures/inspect/state/<case>.json, for the pure gate
# verdict tests of src/health.rs (tests/fixtures/inspect/state/expected.txt
# says what each condition makes of each case).
#
# Usage: scripts/capture-state.sh [IMAGE]   (default plimsoll-example/busybox:1)
#
# Creates containers named plimsoll-capture-state-<case>-$$ and removes them
# (only those) on exit. Only the `State` object and the name are kept: the
# verdict reads nothing else, and the rest holds host details.
set -euo pipefail

IMAGE="${1:-plimsoll-example/busybox:1}"
OUT="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/inspect/state"
P="plimsoll-capture-state-$$"
mkdir -p "$OUT"
made=()
cleanup() { for c in "${made[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

run() { # case, docker run args...
    local name="$P-$1"; shift
    made+=("$name")
    docker run -d --name "$name" "$@" >/dev/null
}
save() { # case
    docker inspect "$P-$1" | jq '.[0] | {Name: "/\($case)", State}' --arg case "$1" >"$OUT/$1.json"
    printf 'capture-state: %s: %s\n' "$1" "$(jq -c '[.State.Status, .State.ExitCode, .State.OOMKilled, .State.Health.Status]' "$OUT/$1.json")" >&2
}
until_status() { # case, jq filter on State that must be true
    for _ in $(seq 1 200); do
        if docker inspect "$P-$1" | jq -e ".[0].State | $2" >/dev/null; then return 0; fi
        sleep 0.1
    done
    printf 'capture-state: %s never met %s\n' "$1" "$2" >&2; return 1
}

run running "$IMAGE" sleep 600
until_status running '.Status == "running"'; save running

run healthy --health-cmd true --health-interval 1s "$IMAGE" sleep 600
until_status healthy '.Health.Status == "healthy"'; save healthy

run starting --health-cmd true --health-interval 60s --health-start-period 60s "$IMAGE" sleep 600
until_status starting '.Status == "running"'; save starting

run unhealthy --health-cmd 'echo broken; exit 1' --health-interval 1s --health-retries 1 "$IMAGE" sleep 600
until_status unhealthy '.Health.Status == "unhealthy"'; save unhealthy

# Its check failed, then it exited: ended counts, not the last check.
run exited-unhealthy --health-cmd 'echo broken; exit 1' --health-interval 1s --health-retries 1 "$IMAGE" sh -c 'sleep 3; exit 2'
until_status exited-unhealthy '.Status == "exited"'; save exited-unhealthy

run exited-0 "$IMAGE" true
until_status exited-0 '.Status == "exited"'; save exited-0

run exited-1 "$IMAGE" sh -c 'exit 1'
until_status exited-1 '.Status == "exited"'; save exited-1

# A 6 MiB limit and a shell that keeps doubling a string: the kernel's OOM killer.
run oom-killed --memory 6m --memory-swap 6m "$IMAGE" sh -c 'x=aaaaaaaaaaaaaaaa; while :; do x="$x$x"; done'
until_status oom-killed '.Status == "exited"'; save oom-killed

# Between two restarts the state is "restarting" only for a moment: inspect until caught.
run restarting --restart always "$IMAGE" sh -c 'exit 3'
for _ in $(seq 1 600); do
    docker inspect "$P-restarting" >"$OUT/.restarting.tmp"
    jq -e '.[0].State.Status == "restarting"' "$OUT/.restarting.tmp" >/dev/null && break
done
jq '.[0] | {Name: "/restarting", State}' "$OUT/.restarting.tmp" >"$OUT/restarting.json"
rm -f "$OUT/.restarting.tmp"
printf 'capture-state: restarting: %s\n' "$(jq -c '[.State.Status, .State.ExitCode, .State.Restarting]' "$OUT/restarting.json")" >&2

made+=("$P-created")
docker create --name "$P-created" "$IMAGE" true >/dev/null
save created

run paused "$IMAGE" sleep 600
until_status paused '.Status == "running"'; docker pause "$P-paused" >/dev/null; save paused
