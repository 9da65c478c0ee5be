#!/usr/bin/env bash
# The agent's cost of scanning container logs for secret values: its CPU and
# peak memory while one managed container prints about 1 MB/s of log lines
# for 30 s, against the same agent idle (the container silent) for 30 s.
#
#   bench/logscan.sh [--seconds N] [--rate BYTES_PER_SECOND]
#
# The agent (PLIMSOLL_BIN, else a release build) follows a git repository
# made here (file://) with one stack: a busybox service holding a secret
# variable. Phase 1: the service sleeps (idle agent, its logs followed).
# Phase 2: a new revision makes it print RATE bytes of lines a second; the
# agent follows the new container. Figures: CPU seconds (utime + stime from
# /proc/PID/stat) over each window, as a share of one core; peak memory
# (VmHWM) and VmRSS at the end of each window; bytes the scanner read
# (`heartbeat.logs.bytes` in /status) and streams dropped.
#
# Exits non-zero when a figure cannot be established (the agent does not
# start, the revision is not applied, the stream is not followed, or the
# scanner read less than half the bytes printed). Everything it creates
# (labelled with its stack) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

seconds=30
rate=1000000
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift ;;
    --rate) rate=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
  shift
done
release_binary bench/logscan.sh docker git curl jq

S=plbench-logscan-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/$S.XXXX")
repo=$work/repo
state=$work/state
alog=$work/agent.log
token=bench-sync-token-$$
agent_pid=
agent_addr=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$agent_pid" ]; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  docker ps -aq --filter "label=io.plimsoll.stack=$S" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker network ls -q --filter "label=io.plimsoll.stack=$S" | xargs -r docker network rm >/dev/null 2>&1 || true
  if [ "$rc" = 0 ]; then rm -rf "$work"; else echo "kept: $work" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status() { curl -fsS "http://$agent_addr/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$agent_pid/stat"; }
kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$agent_pid/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# scanned: the bytes the scanner has read, from a fresh heartbeat
# (`POST /heartbeat`; /status shows what the last beat saw).
scanned() {
  local before i
  before=$(status | jq -r '.heartbeat.beats // 0')
  curl -fsS -X POST -H "Authorization: Bearer $token" "http://$agent_addr/heartbeat" >/dev/null
  for i in $(seq 300); do
    [ "$(status | jq -r '.heartbeat.beats // 0')" -gt "$before" ] && break
    sleep 0.1
  done
  status | jq -r '.heartbeat.logs.bytes // 0'
}

# wait_for WHAT SECONDS CMD...: until CMD succeeds, else fail naming WHAT.
wait_for() {
  local what=$1 limit=$2 i
  shift 2
  for i in $(seq $((limit * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "could not establish the figures: $what within ${limit}s" >&2
  tail -n 30 "$alog" >&2
  exit 1
}

# commit COMMAND: the stack's service runs COMMAND (sh -c); returns the SHA.
commit() {
  cat >"$repo/stacks/$S/compose.yaml" <<YAML
name: $S
services:
  app:
    image: plimsoll-example/busybox:1
    init: true
    environment:
      DB_PASSWORD: "bench-secret-value-$$"
    command: ["sh", "-c", "$1"]
YAML
  git -C "$repo" add -A
  git -C "$repo" -c user.name=bench -c user.email=bench@plimsoll.invalid -c commit.gpgsign=false commit -qm "$1"
  git -C "$repo" rev-parse HEAD
}

# measure LABEL: CPU and memory of the agent over the window.
measure() {
  local t0 c0 b0 t1 c1 b1 hz
  hz=$(getconf CLK_TCK)
  t0=$(now_us); c0=$(cpu_ticks); b0=$(scanned)
  sleep "$seconds"
  t1=$(now_us); c1=$(cpu_ticks); b1=$(scanned)
  local wall cpu
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
  cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')
  eval "${1}_cpu=$cpu ${1}_wall=$wall ${1}_bytes=$((b1 - b0)) ${1}_rss=$(kb VmRSS) ${1}_hwm=$(kb VmHWM)"
}

mkdir -p "$repo/stacks/$S"
printf '%s\n' "$token" >"$work/token"
git -C "$repo" init -q -b main
printf 'alerts: {interval: 1m}\n' >"$repo/plimsoll.yaml"
sha=$(commit "sleep 3600")
: >"$alog"
"$plimsoll" --state-dir "$state" agent --repo "file://$repo" --interval 1s \
  --sync-token-file "$work/token" --listen 127.0.0.1:0 2>>"$alog" &
agent_pid=$!
wait_for "the agent listening" 30 grep -q "listening on http://" "$alog"
agent_addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$alog" | head -n 1)
wait_for "the first revision applied" 60 sh -c "curl -fsS http://$agent_addr/status | jq -e '.revision == \"$sha\"'"
wait_for "the idle container's logs followed" 60 sh -c "curl -fsS http://$agent_addr/status | jq -e '.heartbeat.logs.streams >= 1'"
echo "idle: measuring ${seconds}s" >&2
measure idle

# About RATE bytes a second: 100-byte lines (99 characters and a newline).
line=$(printf 'log line of the benchmark, ordinary text that holds no secret value %030d' 0)
lines=$((rate / 100))
sha=$(commit "while true; do yes '$line' | head -n $lines; sleep 1; done")
wait_for "the noisy revision applied" 60 sh -c "curl -fsS http://$agent_addr/status | jq -e '.revision == \"$sha\"'"
followed=
for i in $(seq 60); do
  [ "$(scanned)" -gt "$rate" ] && { followed=1; break; }
  sleep 1
done
[ -n "$followed" ] || { echo "could not establish the figures: the noisy container's logs were not scanned within 60s" >&2; exit 1; }
echo "scanning: measuring ${seconds}s" >&2
measure busy
dropped=$(status | jq -r '.heartbeat.logs.dropped')

share() { awk -v c="$1" -v w="$2" 'BEGIN { printf "%.1f", 100 * c / w }'; }
printf '%-34s %s\n' "binary" "$plimsoll"
printf '%-34s CPU %ss of %ss (%s %% of a core), VmRSS %s MB, peak VmHWM %s MB\n' \
  "idle (logs followed, silent)" "$idle_cpu" "$idle_wall" "$(share "$idle_cpu" "$idle_wall")" "$(mb "$idle_rss")" "$(mb "$idle_hwm")"
printf '%-34s CPU %ss of %ss (%s %% of a core), VmRSS %s MB, peak VmHWM %s MB\n' \
  "scanning ~$((rate / 1000)) kB/s" "$busy_cpu" "$busy_wall" "$(share "$busy_cpu" "$busy_wall")" "$(mb "$busy_rss")" "$(mb "$busy_hwm")"
printf '%-34s %s bytes (%s kB/s), streams dropped: %s\n' "scanned while measuring" "$busy_bytes" \
  "$(awk -v b="$busy_bytes" -v w="$busy_wall" 'BEGIN { printf "%.0f", b / w / 1000 }')" "$dropped"
if [ "$busy_bytes" -lt $((rate * seconds / 2)) ]; then
  echo "could not establish the figures: the scanner read $busy_bytes bytes, less than half of what was printed" >&2
  exit 1
fi
