# shellcheck shell=bash
# Helpers shared by the engine benchmarks (sourced, not run).

# now_us: wall clock in microseconds.
now_us() { echo $(( $(date +%s%N) / 1000 )); }

# elapsed_ms START_US: milliseconds since START_US, one decimal.
elapsed_ms() {
  local end
  end=$(now_us)
  awk -v d="$(( end - $1 ))" 'BEGIN { printf "%.1f\n", d / 1000 }'
}

# median: the median of the numbers on stdin, one a line.
median() {
  sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f\n", m }'
}

# time_ms LOG CMD...: runs CMD once with stdout and stderr appended to LOG,
# prints its wall time in ms; on failure prints LOG's tail and returns 1.
time_ms() {
  local log=$1 t0 rc=0
  shift
  t0=$(now_us)
  "$@" >>"$log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "FAILED ($rc): $*" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
  elapsed_ms "$t0"
}

# ratio A B: A / B, one decimal.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b > 0) ? a / b : 0 }'; }

# release_binary SCRIPT TOOLS...: checks that TOOLS are installed, sets
# `plimsoll` to $PLIMSOLL_BIN or a fresh release build, and makes sure the
# busybox test image exists.
release_binary() {
  local script=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$script needs $tool" >&2; exit 1; }
  done
  if [ -n "${PLIMSOLL_BIN:-}" ]; then
    plimsoll=$PLIMSOLL_BIN
  else
    cargo build --release --quiet
    plimsoll=$PWD/target/release/plimsoll
  fi
  scripts/test-images.sh busybox >/dev/null
}
