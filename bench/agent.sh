#!/usr/bin/env bash
# Benchmark: `plimsoll agent` on the real engine (DESIGN.md "Measured goals").
# One agent (release build) follows a git repository made here (file://) that
# holds one 50-service stack (bench/gen-stack.sh --runnable: busybox, a
# health-gated "db", probes every 300 s except db's and svc17's, every 2 s).
#
#   (a) stop -> running: TRIALS x `docker stop -t 0` of svc17's container;
#       from the moment the stop command returned to the engine's `start`
#       event of the container (its own timestamp; detection polls `docker
#       inspect`); median and p90 (goal: median < 1 s). Between trials the
#       agent is left to finish (svc17 healthy, the heal's cycle ended).
#   (a2) the same with one crash-looping service on the host (another stack,
#       "$id-crash": healthy for 3 s after each start, then unhealthy; it
#       ignores SIGTERM, so each of its heals, a restart, waits its 10 s stop
#       timeout, then its health gate): measured last, after (c).
#   (b) idle memory of the agent managing the 50 services, SETTLE seconds
#       after the first apply (and again at the end): VmRSS (and the peak,
#       VmHWM) from /proc/PID/status (goal: VmRSS < 20 MB); also RssAnon
#       (private memory) and RssFile (the mapped binary and libraries:
#       shared, clean, reclaimable).
#   (c) push -> converged: a commit changes one env var of svc17; from just
#       before `git commit` to the `start` event of svc17's new container, and
#       to /status naming the new revision (the apply waited for the new
#       container's health check, 2 s probes); medians of PUSH_RUNS:
#       (1) a signed GitHub webhook (X-Hub-Signature-256) sent right after
#           the commit, with --interval 1h (only the webhook can trigger);
#       (2) polling with --interval POLL_INTERVAL (the agent restarted on the
#           same state directory, no webhook; each commit at a random point
#           of the poll cycle, so expect about half the interval plus (1)).
#
# Usage: bench/agent.sh [--trials N] [--push-runs N] [--poll-interval D] [--settle S]
#   --trials N          stop -> running trials (default 20)
#   --push-runs N       trials per push -> converged median (default 5)
#   --poll-interval D   the agent's --interval in (c)(2) (default 5s)
#   --settle S          seconds to wait before reading the idle memory (default 15)
# Environment: PLIMSOLL_BIN (default: cargo build --release); PLIMSOLL_BENCH_KEEP=1
# keeps the work directory (repository, state, agent log).
# Needs: docker, git, curl, openssl, jq.
#
# The agent keeps default settings except `crash_loop_heals: 1000`,
# `heal_attempts: 1000` and `heal_backoff: 1s` in plimsoll.yaml: stopping one
# container 20 times in a row is otherwise, rightly, a crash loop that backs
# off, and the crash-looping service of (a2) would be given up on. Everything created is named plbench-agent-<pid>*
# and removed on exit (trap), Ctrl-C included; only the agent this script
# started is stopped. Not a test: the machine is shared and noisy, read the numbers.
# Exit status: 0 when every goal is met; 1 when one is not (all results are
# printed first), or when a step failed or timed out (then nothing is reported
# that was not measured).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

trials=20
push_runs=5
poll_interval=5s
settle=15
while [ $# -gt 0 ]; do
  case $1 in
    --trials) trials=$2; shift ;;
    --push-runs) push_runs=$2; shift ;;
    --poll-interval) poll_interval=$2; shift ;;
    --settle) settle=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
  shift
done
started=$SECONDS
release_binary bench/agent.sh docker git curl openssl jq

id=plbench-agent-$$
S=$id
work=$(mktemp -d "${TMPDIR:-/tmp}/$id.XXXX")
repo=$work/repo
state=$work/state
secret="bench-webhook-secret-$$"
printf '%s\n' "$secret" >"$work/secret"
agents=0
alog=$work/agent-0.log
agent_pid=
agent_addr=

# remove_stack: every container, network and volume labelled with the stack.
remove_stack() {
  local kind ids all stack
  for stack in "$S" "$S-crash"; do
  for kind in container network volume; do
    all=()
    [ "$kind" = container ] && all=(-a)
    ids=$(docker "$kind" ls -q "${all[@]}" --filter "label=io.plimsoll.stack=$stack" 2>/dev/null | sort -u | grep -v '^$' || true)
    [ -z "$ids" ] && continue
    case $kind in
      # Few at a time (moby/moby#42119, see bench/reconcile.sh).
      container) echo "$ids" | xargs -r -n 1 -P 4 docker rm -f -v >/dev/null 2>&1 || true ;;
      network) for n in $ids; do docker network rm "$n" >/dev/null 2>&1 || sleep 2; docker network rm "$n" >/dev/null 2>&1 || true; done ;;
      volume) echo "$ids" | xargs -r docker volume rm -f >/dev/null 2>&1 || true ;;
    esac
  done
  done
}
stop_agent() {
  [ -n "$agent_pid" ] || return 0
  kill -TERM "$agent_pid" 2>/dev/null || true
  local i
  for i in $(seq 200); do
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" 2>/dev/null || true
  agent_pid=
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_agent
  echo "cleaning up: $S" >&2
  remove_stack
  [ "$rc" = 0 ] && [ -z "${PLIMSOLL_BENCH_KEEP:-}" ] || { echo "kept: $work (agent logs: $work/agent-*.log)" >&2; work_keep=1; }
  [ -n "${work_keep:-}" ] || rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_agent ARGS...: starts the agent in the background, waits until it listens.
start_agent() {
  agents=$((agents + 1))
  alog=$work/agent-$agents.log
  : >"$alog"
  "$plimsoll" --state-dir "$state" agent --repo "file://$repo" --listen 127.0.0.1:0 "$@" 2>>"$alog" &
  agent_pid=$!
  local i
  for i in $(seq 300); do
    agent_addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$alog" | head -n 1)
    [ -n "$agent_addr" ] && return 0
    kill -0 "$agent_pid" 2>/dev/null || { echo "the agent exited:" >&2; cat "$alog" >&2; exit 1; }
    sleep 0.1
  done
  echo "the agent did not listen within 30 s" >&2
  exit 1
}
status() { curl -fsS "http://$agent_addr/status"; }
# wait_until SECONDS WHAT CMD...: polls CMD every 50 ms.
wait_until() {
  local limit=$1 what=$2 t0
  shift 2
  t0=$(now_us)
  until "$@" >/dev/null 2>&1; do
    if [ $(( $(now_us) - t0 )) -gt $(( limit * 1000000 )) ]; then
      echo "timed out after ${limit}s waiting for $what; agent log tail:" >&2
      tail -n 30 "$alog" >&2
      exit 1
    fi
    sleep 0.05
  done
}
revision_is() { [ "$(status | jq -r .revision)" = "$1" ]; }
svc17_settled() {
  status | jq -e --arg s "$S" '.stacks[] | select(.name == $s) | .services[]
    | select(.service == "svc17") | .state == "in sync" and .health == "healthy"' >/dev/null
}
healthy() { [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null)" = healthy ]; }
# cycle_after TIME: the agent finished a cycle after TIME (/status last_sync.time).
cycle_after() { [ "$(status | jq -r .last_sync.time)" \> "$1" ]; }
running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
has_env() { running "$1" && docker inspect -f '{{json .Config.Env}}' "$1" | grep -qF "\"$2\""; }
all_running() { [ "$(docker ps -q --filter "label=io.plimsoll.stack=$S" | wc -l)" -ge 50 ]; }
# start_event_ms SINCE_NS CONTAINER_FILTER: ms from SINCE_NS to the first start event after it.
start_event_ms() {
  local since=$1 filter=$2 secs ns
  secs=$(awk -v n="$since" 'BEGIN { printf "%.9f", n / 1e9 }')
  ns=$(docker events --since "$secs" --until "$(date +%s.%N)" --filter "$filter" \
    --filter event=start --format '{{.TimeNano}}' | head -n 1)
  [ -n "$ns" ] || { echo "no start event for $filter" >&2; exit 1; }
  awk -v a="$ns" -v b="$since" 'BEGIN { printf "%.1f\n", (a - b) / 1e6 }'
}
# percentile P: the P-th percentile (nearest rank) of the numbers on stdin.
percentile() {
  sort -g | awk -v p="$1" '{ a[NR] = $1 } END { if (NR == 0) exit 1; r = int((p / 100) * NR + 0.999999); if (r < 1) r = 1; printf "%.1f\n", a[r] }'
}
rss_kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
sign() { printf '%s' "$1" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= *//'; }
commit() {
  git -C "$repo" -c user.name=bench -c user.email=bench@plimsoll.invalid -c commit.gpgsign=false \
    commit -qam "$1"
  git -C "$repo" rev-parse HEAD
}
# set_svc17 VALUE: svc17's SERVICE_INDEX in the repository's work tree.
set_svc17() {
  sed -i -E "s/SERVICE_INDEX: \"17[^\"]*\"/SERVICE_INDEX: \"$1\"/" "$repo/stacks/$S/compose.yaml"
}

echo "plimsoll $("$plimsoll" --version | awk '{print $2}'), engine" \
  "$(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})'), $(nproc) cores; work: $work" >&2

# ---- the repository and the first apply ---------------------------------------
mkdir -p "$repo/stacks/$S"
git -C "$repo" init -q -b main
printf 'agent: {crash_loop_heals: 1000, heal_attempts: 1000, heal_backoff: 1s}\n' >"$repo/plimsoll.yaml"
{ echo "name: $S"; bench/gen-stack.sh 50 --runnable 300s 17; } >"$repo/stacks/$S/compose.yaml"
printf 'DEPLOYMENT_ENV=bench\nDB_PASSWORD=bench-password\n' >"$repo/stacks/$S/.env"
git -C "$repo" add -A
sha=$(commit "50 services")
c17=$S-svc17-1

start_agent --interval 1h --webhook-secret-file "$work/secret"
echo "first apply of 50 services by the agent ..." >&2
t0=$(now_us)
wait_until 300 "the first revision applied" revision_is "$sha"
first_apply=$(elapsed_ms "$t0")
wait_until 60 "50 containers running" all_running
wait_until 60 "svc17 healthy and in sync" svc17_settled

# ---- (b) idle memory ---------------------------------------------------------------
echo "(b) settling for $settle s ..." >&2
sleep "$settle"
rss_idle=$(rss_kb "$agent_pid" VmRSS)
hwm_idle=$(rss_kb "$agent_pid" VmHWM)
anon_idle=$(rss_kb "$agent_pid" RssAnon)
file_idle=$(rss_kb "$agent_pid" RssFile)
echo "(b) VmRSS $(mb "$rss_idle") MB (RssAnon $(mb "$anon_idle"), RssFile $(mb "$file_idle")), VmHWM $(mb "$hwm_idle") MB" >&2

# ---- (a) stop -> running -------------------------------------------------------------
# stop_trials: TRIALS x stop -> running of svc17, into sr (ms).
stop_trials() {
  local i prev before t0 started_ms
  sr=()
  for i in $(seq "$trials"); do
    prev=$(status | jq -r .last_sync.time)
    before=$(date +%s%N)
    docker stop -t 0 "$c17" >/dev/null
    t0=$(date +%s%N)
    wait_until 30 "$c17 running again (trial $i)" running "$c17"
    # Events since before the stop: a start before the command returned counts (negative).
    # (Its own assignment: a failure inside a nested $(...) would go unnoticed.)
    started_ms=$(start_event_ms "$before" "container=$c17")
    sr+=("$(awk -v e="$started_ms" -v d="$(( (t0 - before) / 1000 ))" \
      'BEGIN { printf "%.1f\n", e - d / 1000 }')")
    # The heal's cycle waits for the health check: until it ends, /status is
    # stale and another stop would land in it (and count as a failed heal).
    wait_until 60 "svc17 healthy again" healthy "$c17"
    wait_until 60 "the heal's cycle to end" cycle_after "$prev"
    wait_until 60 "svc17 healthy and in sync again" svc17_settled
    sleep 0.5
  done
}
echo "(a) $trials x docker stop -t 0 $c17 ..." >&2
stop_trials
stop_median=$(printf '%s\n' "${sr[@]}" | median)
stop_p90=$(printf '%s\n' "${sr[@]}" | percentile 90)
echo "(a) ${sr[*]} ms" >&2

# ---- (c)(1) push -> converged by webhook ----------------------------------------------
echo "(c) $push_runs pushes announced by a signed webhook ..." >&2
hr=() hd=()
for i in $(seq "$push_runs"); do
  set_svc17 "17-hook-$i"
  t0=$(date +%s%N)
  new=$(commit "hook $i")
  body=$(printf '{"ref":"refs/heads/main","after":"%s","repository":{"full_name":"bench/hosts"}}' "$new")
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://$agent_addr/webhook" \
    -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
    -H "X-Hub-Signature-256: sha256=$(sign "$body")" --data-binary "$body")
  [ "$code" = 202 ] || { echo "the webhook answered $code" >&2; exit 1; }
  wait_until 60 "svc17 running the new config (webhook $i)" has_env "$c17" "SERVICE_INDEX=17-hook-$i"
  wait_until 60 "revision $new applied" revision_is "$new"
  hd+=("$(awk -v a="$(date +%s%N)" -v b="$t0" 'BEGIN { printf "%.1f\n", (a - b) / 1e6 }')")
  hr+=("$(start_event_ms "$t0" "label=io.plimsoll.stack=$S")")
  wait_until 60 "svc17 healthy and in sync" svc17_settled
done
hook_median=$(printf '%s\n' "${hr[@]}" | median)
hook_done=$(printf '%s\n' "${hd[@]}" | median)
echo "(c) webhook: running ${hr[*]} ms; applied ${hd[*]} ms" >&2

# ---- (c)(2) push -> converged by polling ------------------------------------------------
stop_agent
start_agent --interval "$poll_interval"
poll_s=$(awk -v d="$poll_interval" 'BEGIN { n = d + 0; if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60; print n }')
wait_until 60 "the restarted agent on $new" revision_is "$new"
wait_until 60 "svc17 healthy and in sync" svc17_settled
echo "(c) $push_runs pushes found by polling every $poll_interval ..." >&2
pr=() pd=()
for i in $(seq "$push_runs"); do
  set_svc17 "17-poll-$i"
  t0=$(date +%s%N)
  new=$(commit "poll $i")
  wait_until 120 "svc17 running the new config (poll $i)" has_env "$c17" "SERVICE_INDEX=17-poll-$i"
  wait_until 60 "revision $new applied" revision_is "$new"
  pd+=("$(awk -v a="$(date +%s%N)" -v b="$t0" 'BEGIN { printf "%.1f\n", (a - b) / 1e6 }')")
  pr+=("$(start_event_ms "$t0" "label=io.plimsoll.stack=$S")")
  wait_until 60 "svc17 healthy and in sync" svc17_settled
  # The next commit at a random point of the poll cycle, not in step with it.
  sleep "$(awk -v m="$poll_s" -v r="$RANDOM" 'BEGIN { printf "%.2f", m * r / 32768 }')"
done
poll_median=$(printf '%s\n' "${pr[@]}" | median)
poll_done=$(printf '%s\n' "${pd[@]}" | median)
echo "(c) poll: running ${pr[*]} ms; applied ${pd[*]} ms" >&2

# ---- (a2) stop -> running while another service crash-loops ------------------------------
mkdir -p "$repo/stacks/$S-crash"
cat >"$repo/stacks/$S-crash/compose.yaml" <<YAML
name: $S-crash
services:
  sick:
    image: plimsoll-example/busybox:1
    command: ["sh", "-c", "trap '' TERM; sleep 3; touch /tmp/sick; while true; do sleep 1; done"]
    stop_grace_period: 10s
    healthcheck:
      test: ["CMD", "sh", "-c", "! test -e /tmp/sick"]
      interval: 1s
      timeout: 1s
      retries: 1
YAML
git -C "$repo" add -A
crash=$(commit "a crash-looping service")
wait_until 120 "the crash-looping stack applied" revision_is "$crash"
sick_restarts() { grep -c "restarting.*$S-crash/sick\|$S-crash/sick.*restarting" "$alog" || true; }
restarting() { [ "$(sick_restarts)" -gt 0 ]; }
wait_until 60 "the first heal of the crash-looping service" restarting
echo "(a2) $trials x docker stop -t 0 $c17 while $S-crash/sick crash-loops ..." >&2
stop_trials
crash_median=$(printf '%s\n' "${sr[@]}" | median)
crash_p90=$(printf '%s\n' "${sr[@]}" | percentile 90)
crash_heals=$(sick_restarts)
echo "(a2) ${sr[*]} ms; $crash_heals restarts of the crash-looping service" >&2
rss_end=$(rss_kb "$agent_pid" VmRSS)
hwm_end=$(rss_kb "$agent_pid" VmHWM)
anon_end=$(rss_kb "$agent_pid" RssAnon)

# ---- results --------------------------------------------------------------------------------
echo
echo "plimsoll agent, release build, one 50-service stack"
printf '%-58s %s\n' "first apply of 50 services (agent start -> revision applied)" "$first_apply ms"
printf '%-58s median %s ms, p90 %s ms\n' "(a) stop -> running ($trials x docker stop -t 0 svc17)" "$stop_median" "$stop_p90"
printf '%-58s median %s ms, p90 %s ms (%s restarts of it)\n' "(a2) the same, another service crash-looping" "$crash_median" "$crash_p90" "$crash_heals"
printf '%-58s VmRSS %s MB (peak VmHWM %s MB)\n' "(b) idle memory, $settle s after the first apply" "$(mb "$rss_idle")" "$(mb "$hwm_idle")"
printf '%-58s RssAnon %s MB + RssFile %s MB (mapped binary, libraries)\n' "    of which" "$(mb "$anon_idle")" "$(mb "$file_idle")"
printf '%-58s VmRSS %s MB (peak VmHWM %s MB, RssAnon %s MB)\n' "    at the end (restarted agent, after (c))" "$(mb "$rss_end")" "$(mb "$hwm_end")" "$(mb "$anon_end")"
printf '%-58s new container %s ms, revision applied %s ms\n' "(c) push -> converged, signed webhook ($push_runs runs)" "$hook_median" "$hook_done"
printf '%-58s new container %s ms, revision applied %s ms\n' "    push -> converged, polling --interval $poll_interval ($push_runs runs)" "$poll_median" "$poll_done"
echo
unmet=()
# goal NAME MET: prints the verdict; a goal not met makes the script exit 1.
goal() {
  if [ "$2" = 1 ]; then
    echo "goal $1: met"
  else
    echo "goal $1: NOT met"
    unmet+=("${1%% *}")
  fi
}
goal "(a) median stop -> running < 1000 ms" "$(awk -v m="$stop_median" 'BEGIN { print (m < 1000) ? 1 : 0 }')"
goal "(a2) median with a crash loop < 300 ms and within 1.5x of (a)" \
  "$(awk -v m="$stop_median" -v c="$crash_median" 'BEGIN { print (c < 300 && c < 1.5 * m + 50) ? 1 : 0 }')"
goal "(b) idle VmRSS < 20 MB" "$(awk -v k="$rss_idle" 'BEGIN { print (k / 1024 < 20) ? 1 : 0 }')"
echo "total $((SECONDS - started)) s"
if [ ${#unmet[@]} -gt 0 ]; then
  echo "goals NOT met: ${unmet[*]}" >&2
  exit 1
fi
