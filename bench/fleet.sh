#!/usr/bin/env bash
# Benchmark: a fleet of agents against one repository (issue "many hosts").
# N agents (release build) follow one git repository served by `git daemon`
# on 127.0.0.1 (a real server, so every fetch is a counted request), each
# with its own --host name and state directory, all started together.
# plimsoll.yaml declares N hosts; the first ASSIGNED of them run one small
# stack each, the others have no stacks (they fetch, find nothing to do and
# make no further engine calls). All agents use this machine's engine; each
# assigned stack has its own name, so they never meet.
#
# Reported, for N = 50 and 100 (or --agents):
#   - git fetch load: fetches (upload-pack requests the server logged) per
#     second over the measuring window, against the ideal N / interval, and
#     the busiest second (a thundering herd shows as a busiest second far
#     above the mean; agents poll at a random phase after their start and
#     then every interval ± 10 %);
#   - start-up: requests in the first interval after all agents were started
#     together, and the busiest second (every agent fetches once when it
#     starts; its first poll then comes at a random phase);
#   - memory per agent, idle, after the window: VmRSS median and max, and
#     RssAnon (private) median, from /proc/PID/status (goal: < 20 MB);
#   - push -> fleet converged: one commit changes the first assigned stack;
#     seconds until every agent's /status names the new revision.
#
# Usage: bench/fleet.sh [--agents "50 100"] [--interval 10s] [--window 60] [--assigned 3]
# Environment: PLIMSOLL_BIN (default: cargo build --release); PLIMSOLL_BENCH_KEEP=1
# keeps the work directory (repository, logs).
# Needs: docker, git (with git-daemon), curl, jq.
# Everything created is named plbench-fleet-<pid>* and removed on exit (trap).
# Not a test: the machine is shared and noisy, read the numbers. But a number
# is printed only once established: an agent that does not reach a revision
# within 120 s, or exits, fails the script (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

sizes="50 100"
interval=10s
window=60
assigned=3
while [ $# -gt 0 ]; do
  case $1 in
    --agents) sizes=$2; shift ;;
    --interval) interval=$2; shift ;;
    --window) window=$2; shift ;;
    --assigned) assigned=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
  shift
done
release_binary bench/fleet.sh docker git curl jq
git daemon --help >/dev/null 2>&1 || [ -x "$(git --exec-path)/git-daemon" ] || { echo "bench/fleet.sh needs git-daemon" >&2; exit 1; }

id=plbench-fleet-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/$id.XXXX")
pids=()
daemon_pid=

stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
}
remove_stacks() {
  local ids
  ids=$(docker ps -a --filter "label=io.plimsoll.stack" --format '{{.ID}} {{.Label "io.plimsoll.stack"}}' | awk -v p="$id-" 'index($2, p) == 1 { print $1 }')
  [ -n "$ids" ] && echo "$ids" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker network ls --format '{{.Name}}' | grep "^$id-" | xargs -r -n 1 docker network rm >/dev/null 2>&1 || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  [ -n "$daemon_pid" ] && { kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; }
  echo "cleaning up: $id" >&2
  remove_stacks
  if [ "$rc" != 0 ] || [ -n "${PLIMSOLL_BENCH_KEEP:-}" ]; then
    echo "kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# write_repo N VERSION: plimsoll.yaml with N hosts, `assigned` stacks on the first hosts.
write_repo() {
  local n=$1 version=$2 repo=$work/srv/fleet.git i s
  {
    echo "hosts:"
    for i in $(seq "$n"); do echo "  fleet-$i: {labels: {rack: r$(( i % 4 ))}}"; done
    echo "stacks:"
    for i in $(seq "$assigned"); do echo "  $id-s$i: {hosts: [fleet-$i]}"; done
  } >"$work/plimsoll.yaml"
  for i in $(seq "$assigned"); do
    s=$id-s$i
    mkdir -p "$work/stacks/$s"
    printf 'name: %s\nservices:\n  app:\n    image: plimsoll-example/busybox:1\n    init: true\n    command: ["sleep", "3600"]\n    environment: {VERSION: "%s"}\n' "$s" "$version" >"$work/stacks/$s/compose.yaml"
  done
  [ -d "$repo" ] || git init -q --bare -b main "$repo"
}

# commit MESSAGE: commits plimsoll.yaml and stacks/ to the served repository.
commit() {
  local clone=$work/clone
  if [ ! -d "$clone" ]; then
    git init -q -b main "$clone"
    git -C "$clone" remote add origin "$work/srv/fleet.git"
  fi
  rm -rf "$clone/stacks" && cp -r "$work/stacks" "$clone/" && cp "$work/plimsoll.yaml" "$clone/"
  git -C "$clone" add -A
  git -C "$clone" -c user.name=bench -c user.email=bench@plimsoll.invalid -c commit.gpgsign=false commit -q -m "$1"
  git -C "$clone" push -q origin HEAD:main
  git -C "$clone" rev-parse HEAD
}

# vm PID FIELD: a /proc/PID/status field in MB.
vm() { awk -v f="$2:" '$1 == f { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"; }

run_fleet() {
  local n=$1 port t0 i addr rev start_s
  rm -rf "$work/srv" "$work/stacks" "$work/clone" "$work/state" && mkdir -p "$work/srv" "$work/state"
  write_repo "$n" 1
  local first
  first=$(commit "fleet of $n")
  port=$(free_port)
  git daemon --reuseaddr --export-all --enable=upload-pack --base-path="$work/srv" \
    --listen=127.0.0.1 --port="$port" --verbose --log-destination=stderr "$work/srv" \
    2> >(python3 -u -c 'import sys, time
for line in sys.stdin: print(f"{time.time():.3f} {line}", end="", flush=True)' >"$work/daemon-$n.log") &
  daemon_pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

  start_s=$(date +%s.%N)
  for i in $(seq "$n"); do
    "$plimsoll" --state-dir "$work/state/$i" agent --repo "git://127.0.0.1:$port/fleet.git" \
      --host "fleet-$i" --interval "$interval" --listen 127.0.0.1:0 2>"$work/agent-$n-$i.log" &
    pids+=($!)
  done
  # Every agent at the first revision.
  local addrs=()
  for i in $(seq "$n"); do
    addr=
    for _ in $(seq 600); do
      addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$work/agent-$n-$i.log" | head -n 1)
      [ -n "$addr" ] && break
      sleep 0.1
    done
    [ -n "$addr" ] || { echo "agent $i did not listen:" >&2; tail "$work/agent-$n-$i.log" >&2; exit 1; }
    addrs+=("$addr")
  done
  # wait_revision REV: until every agent's /status names REV; an agent that
  # does not within 120 s fails the benchmark (no time is reported for a
  # fleet that did not converge).
  wait_revision() {
    local want=$1 a i=0 got
    for a in "${addrs[@]}"; do
      i=$((i + 1))
      got=
      for _ in $(seq 1200); do
        got=$(curl -fsS "http://$a/status" 2>/dev/null | jq -r .revision) || got=
        [ "$got" = "$want" ] && break
        sleep 0.1
      done
      if [ "$got" != "$want" ]; then
        echo "agent $i (fleet-$i, $a) is at revision ${got:-unknown}, not $want, after 120 s:" >&2
        tail -n 20 "$work/agent-$n-$i.log" >&2
        exit 1
      fi
    done
  }
  # alive: every agent is still running (its memory and idleness are read below).
  alive() {
    local p i=0
    for p in "${pids[@]}"; do
      i=$((i + 1))
      kill -0 "$p" 2>/dev/null || { echo "agent $i exited:" >&2; tail -n 20 "$work/agent-$n-$i.log" >&2; exit 1; }
    done
  }
  local spawned
  spawned=$(awk -v s="$start_s" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  wait_revision "$first"
  # The measuring window starts once every agent has started and applied.
  local from to
  from=$(date +%s.%N)
  sleep "$window"
  to=$(date +%s.%N)

  # Memory per agent, idle.
  alive
  local rss anon
  rss=$(for p in "${pids[@]}"; do vm "$p" VmRSS; done | sort -g)
  anon=$(for p in "${pids[@]}"; do vm "$p" RssAnon; done | sort -g)

  # Push -> every agent at the new revision.
  write_repo "$n" 2
  t0=$(now_us)
  rev=$(commit "change s1")
  wait_revision "$rev"
  local converge_ms
  converge_ms=$(elapsed_ms "$t0")
  alive
  stop_all
  kill "$daemon_pid" 2>/dev/null || true
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=

  local log=$work/daemon-$n.log secs
  secs=${interval%s}
  awk -v from="$from" -v to="$to" -v start="$start_s" -v n="$n" -v iv="$secs" -v w="$window" -v spawned="$spawned" '
    /Request upload-pack/ {
      t = $1
      if (t >= start && t < start + iv) { first++; s = int(t - start); fs[s]++ }
      if (t >= from && t < to) { c++; b = int(t - from); per[b]++ }
    }
    END {
      max = 0; for (k in per) if (per[k] > max) max = per[k]
      printf "  fetches in the %d s window: %d (%.2f/s; ideal N/interval = %.2f/s), busiest second: %d\n", w, c, c / w, n / iv, max
      fmax = 0; for (k in fs) if (fs[k] > fmax) { fmax = fs[k]; fat = k }
      printf "  start-up: %d fetches in the first %d s after starting all agents together (all listening after %s s), busiest second: %d (second %d)\n", first, iv, spawned, fmax, fat
    }' "$log"
  printf '  idle memory per agent: VmRSS median %s MB, max %s MB; RssAnon median %s MB\n' \
    "$(echo "$rss" | median)" "$(echo "$rss" | tail -n 1)" "$(echo "$anon" | median)"
  printf '  push -> all %d agents at the new revision: %.1f s (polling every %s)\n' "$n" "$(awk -v m="$converge_ms" 'BEGIN { print m / 1000 }')" "$interval"
  local idle
  idle=$({ grep -l "idle until the revision changes" "$work"/agent-"$n"-*.log || true; } | wc -l)
  printf '  agents with no stacks that went idle (no engine calls): %d of %d\n' "$idle" "$(( n - assigned ))"
  remove_stacks
}

echo "plimsoll fleet benchmark: $(nproc) cores, Docker $(docker version --format '{{.Server.Version}}'), interval $interval, window ${window}s, $assigned hosts with a stack"
for n in $sizes; do
  echo "N = $n agents"
  run_fleet "$n"
done
