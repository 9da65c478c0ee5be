#!/usr/bin/env bash
# Benchmark: what hashing a large bind-mounted repository directory costs a
# plan. A stack mounts `./data` holding FILES files of SIZE_MB megabytes in
# all (in 100 subdirectories); `plimsoll reconcile --dry-run` (which hashes
# it on every plan) is timed against the same stack mounting a one-file
# directory. The difference is the hashing cost. Needs the engine (a dry run
# reads it, changes nothing).
#
# Usage: bench/mounts.sh [FILES] [SIZE_MB] [RUNS]   (defaults: 10000 200 5)
# Set PLIMSOLL_BIN to time a given binary instead of a fresh release build.
# Not a test: the machine is shared and noisy, so read the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
files=${1:-10000}
size_mb=${2:-200}
runs=${3:-5}
release_binary bench/mounts.sh docker head dd /usr/bin/time

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
per_file=$(( size_mb * 1024 * 1024 / files ))
for kind in big small; do
  stack=$dir/$kind/stacks/mounts-bench
  mkdir -p "$stack/data"
  printf 'name: plimsoll-bench-mounts-%s\nservices:\n  web:\n    image: plimsoll-example/busybox:1\n    command: ["sleep", "600"]\n    volumes:\n      - ./data:/data:ro\n' \
    "$kind" >"$stack/compose.yaml"
  (cd "$dir/$kind" && git init -q .)
done
echo tiny >"$dir/small/stacks/mounts-bench/data/one"
for d in $(seq 0 99); do
  mkdir -p "$dir/big/stacks/mounts-bench/data/d$d"
done
head -c $(( size_mb * 1024 * 1024 + 1024 * 1024 )) /dev/urandom >"$dir/blob"
for i in $(seq 0 $(( files - 1 ))); do
  dd if="$dir/blob" of="$dir/big/stacks/mounts-bench/data/d$(( i % 100 ))/f$i" \
    bs="$per_file" skip="$i" count=1 status=none
done
rm "$dir/blob"
echo "mounted tree: $(find "$dir/big/stacks/mounts-bench/data" -type f | wc -l) files, $(du -sm "$dir/big/stacks/mounts-bench/data" | cut -f1) MB"

dry_run() {
  local rc=0
  "$plimsoll" --state-dir "$dir/state" reconcile "$1" --dry-run >/dev/null 2>&1 || rc=$?
  # 2: changes planned (the stack is not applied), as expected.
  [ "$rc" = 0 ] || [ "$rc" = 2 ] || { echo "dry run failed ($rc)" >&2; exit 1; }
}
# measure PATH: "<median wall ms> <median CPU ms (user + system)>" of dry runs.
# CPU time is the steadier number on a loaded machine.
# A run that fails (not 0 or 2) fails the benchmark: its time is not reported.
measure() {
  local t0 wall=() cpu=() out rc
  for _ in $(seq "$runs"); do
    t0=$(now_us)
    rc=0
    /usr/bin/time -o "$dir/time" -f '%U %S' \
      "$plimsoll" --state-dir "$dir/state" reconcile "$1" --dry-run >/dev/null 2>"$dir/stderr" || rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 2 ]; then
      echo "dry run of $1 failed ($rc):" >&2
      tail -n 20 "$dir/stderr" >&2
      exit 1
    fi
    out=$(tail -n 1 "$dir/time")
    wall+=("$(elapsed_ms "$t0")")
    cpu+=("$(awk '{ printf "%.1f\n", ($1 + $2) * 1000 }' <<<"$out")")
  done
  echo "$(printf '%s\n' "${wall[@]}" | median) $(printf '%s\n' "${cpu[@]}" | median)"
}
dry_run "$dir/big/stacks/mounts-bench"   # warm the page cache
# (Assigned first: a failed measure inside `<<<"$(...)"` would go unnoticed.)
big_m=$(measure "$dir/big/stacks/mounts-bench")
small_m=$(measure "$dir/small/stacks/mounts-bench")
read -r big big_cpu <<<"$big_m"
read -r small small_cpu <<<"$small_m"
echo "reconcile --dry-run, median of $runs runs (wall / CPU)"
printf '  mounting %5d files / %4d MB  %8.1f ms / %8.1f ms\n' "$files" "$size_mb" "$big" "$big_cpu"
printf '  mounting one small file         %8.1f ms / %8.1f ms\n' "$small" "$small_cpu"
awk -v b="$big" -v s="$small" -v bc="$big_cpu" -v sc="$small_cpu" \
  'BEGIN { printf "  hashing cost                    %8.1f ms / %8.1f ms\n", b - s, bc - sc }'
