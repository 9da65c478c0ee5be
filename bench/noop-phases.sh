#!/usr/bin/env bash
# Where a no-op `plimsoll reconcile` spends its time: runs it under strace
# (--seccomp-bpf, only the engine API requests and the exit are traced; still
# ~10-20% slower than without) and splits each run at the first request of
# each kind:
#
#   startup    process start, load and interpolate the desired state
#   version    API version negotiation (/version; none when the engine cache knows it)
#   info       the engine's name (/info; only when plimsoll.yaml assigns hosts)
#   events     the engine's event log since the engine cache was written (/events)
#   list       containers, networks and volumes (one call each, concurrently)
#   inspect    one /containers/ID/json per managed container that may have changed
#   rest       image inspects, plan, print, exit
#
# Usage: bench/noop-phases.sh STACK_DIR [RUNS]   (default 10 runs; medians, ms)
# Needs strace and python3. PLIMSOLL_BIN overrides target/release/plimsoll.
# The state directory is PLIMSOLL_STATE_DIR, else a new one (one untimed run
# first fills its engine cache).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/noop-phases.sh STACK_DIR [RUNS]}
runs=${2:-10}
plimsoll=${PLIMSOLL_BIN:-$PWD/target/release/plimsoll}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PLIMSOLL_STATE_DIR=${PLIMSOLL_STATE_DIR:-$tmp/state}
"$plimsoll" reconcile "$dir" >/dev/null 2>&1 || { echo "plimsoll reconcile $dir failed" >&2; exit 1; }
for i in $(seq "$runs"); do
  strace -f --seccomp-bpf -tt -e trace=execve,sendto,exit_group -e signal=none -s 100 \
    -o "$tmp/run$i" "$plimsoll" reconcile "$dir" >/dev/null 2>&1
done
python3 - "$tmp" "$runs" <<'PY'
import re, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
phases = ["startup", "version", "info", "events", "list", "inspect", "rest"]
rows, totals, counts = {p: [] for p in phases}, [], []
req = re.compile(r'sendto\(\d+, "(?:GET|POST|HEAD) (?:/v[0-9.]+)?(/[^ ?"]*)')
for i in range(1, runs + 1):
    def ms(line):
        h, m, s = line.split()[1].split(":")
        return (int(h) * 3600 + int(m) * 60 + float(s)) * 1000
    lines = open(f"{tmp}/run{i}").read().splitlines()
    t0, first, inspects, end = ms(lines[0]), {}, 0, None
    for l in lines:
        if "exit_group" in l:
            end = ms(l)
        m = req.search(l)
        if not m:
            continue
        path, t = m.group(1), ms(l)
        if path in ("/_ping", "/version"):
            kind = "version"
        elif path == "/info":
            kind = "info"
        elif path == "/events":
            kind = "events"
        elif path in ("/containers/json", "/networks", "/volumes"):
            kind = "list"
        elif re.fullmatch(r"/containers/[0-9a-f]{64}/json", path):
            kind = "inspect"
            inspects += 1
        elif path.startswith("/images/"):
            kind = "rest"
        else:
            continue
        first.setdefault(kind, t)
    marks = [t0] + [first.get(p) for p in phases[1:]] + [end]
    # A phase that did not happen takes no time.
    for j in range(len(marks) - 2, 0, -1):
        if marks[j] is None:
            marks[j] = marks[j + 1]
    for j, p in enumerate(phases):
        rows[p].append(marks[j + 1] - marks[j])
    totals.append(end - t0)
    counts.append(inspects)
print(f"no-op phases, median of {runs} runs under strace ({statistics.median(counts):.0f} inspects)")
for p in phases:
    print(f"  {p:<8} {statistics.median(rows[p]):8.1f} ms")
print(f"  {'total':<8} {statistics.median(totals):8.1f} ms")
PY
