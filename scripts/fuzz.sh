#!/usr/bin/env bash
# Fuzz plimsoll's parsers of untrusted input with libFuzzer, on stable Rust.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the crate in fuzz/ (its own workspace) with coverage instrumentation
# (`--cfg fuzzing` and LLVM's sanitizer-coverage passes through RUSTFLAGS: no
# nightly toolchain, no AddressSanitizer), then runs each target (default: yaml
# interpolate dotenv webhook) for SECONDS (default 60) with limits: at most
# FUZZ_RSS_MB MiB resident (default 1024) and FUZZ_TIMEOUT seconds per input
# (default 10). Seeds come from fuzz/corpus/<target>/ (committed); what the
# fuzzer learns goes to fuzz/target/corpus/<target>/ (not committed). A crash,
# an out-of-memory, a timeout or a leak fails the run and leaves the input in
# fuzz/artifacts/<target>/: add it to fuzz/corpus/<target>/ and a regression
# test beside the parser. `.ci/run` calls this with a small budget.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
    TARGETS=(yaml interpolate dotenv webhook)
fi
RSS_MB="${FUZZ_RSS_MB:-1024}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
FUZZ="$PWD"

# What cargo-fuzz passes, minus the nightly-only sanitizer flags.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros
# (they run on the host and do not link libFuzzer's runtime).
HOST="$(rustc -vV | sed -n 's/^host: //p')"
echo "fuzz: building ${TARGETS[*]} for $HOST (release, instrumented)" >&2
bins=()
for t in "${TARGETS[@]}"; do bins+=(--bin "$t"); done
cargo build --release --locked --target "$HOST" "${bins[@]}"
BIN="$FUZZ/target/$HOST/release"

status=0
for t in "${TARGETS[@]}"; do
    work="$FUZZ/target/corpus/$t"
    artifacts="$FUZZ/artifacts/$t"
    mkdir -p "$work" "$artifacts"
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s (rss ${RSS_MB} MiB, ${TIMEOUT}s per input)" >&2
    if ! "$BIN/$t" "$work" "$FUZZ/corpus/$t" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb="$RSS_MB" \
        -malloc_limit_mb="$RSS_MB" \
        -timeout="$TIMEOUT" \
        -max_len=65536 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" 2>"$FUZZ/target/$t.log"; then
        echo "fuzz: $t FAILED; the input is in $artifacts/:" >&2
        tail -n 40 "$FUZZ/target/$t.log" >&2
        status=1
    else
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$FUZZ/target/$t.log" >&2 || true
    fi
done
exit "$status"
