#!/usr/bin/env bash
# The module graph of src/: which top-level module refers to which (every
# `crate::<module>` path outside tests), printed as `from -> to` lines, and a
# failure (exit 1) when the top-level modules form a cycle. `cargo modules`
# would do more; this needs only bash and awk.
#
#   scripts/module-graph.sh           # edges, then "no cycle" or the cycles
#   scripts/module-graph.sh --dot     # the same graph for graphviz
#   scripts/module-graph.sh --fine    # edges between files' modules (plan::render -> ...)
#
# Test code is left out: files named tests.rs, files declared as
# `#[cfg(test)] mod x;`, and everything from a `#[cfg(test)]` line that opens
# an inline module on (plimsoll keeps unit tests at the end of a file).
# lib.rs, main.rs and fuzzing.rs (a test harness) are not modules of the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}

# Files of modules declared `#[cfg(test)] mod x;` (tests in a file of their own).
test_files=$(
    find src -name '*.rs' | while read -r file; do
        dir=$(dirname "$file")
        case $file in */mod.rs | src/lib.rs) ;; *) dir=${file%.rs} ;; esac
        awk '/^[[:space:]]*#\[cfg\(test\)\]/ { getline; if (match($0, /^[[:space:]]*(pub(\([a-z]+\))? )?mod [a-z_0-9]+;/)) { sub(/^[[:space:]]*(pub(\([a-z]+\))? )?mod /, ""); sub(/;.*/, ""); print } }' "$file" |
            while read -r m; do echo "$dir/$m.rs"; echo "$dir/$m/mod.rs"; done
    done
)

edges=$(
    find src -name '*.rs' ! -name tests.rs ! -path 'src/lib.rs' ! -path 'src/main.rs' \
        ! -path 'src/fuzzing.rs' ! -path 'src/fuzzing/*' | sort | while read -r file; do
        grep -qxF "$file" <<<"$test_files" && continue
        rel=${file#src/}
        rel=${rel%.rs}
        rel=${rel%/mod}
        top=${rel%%/*}
        fine=${rel//\//::}
        awk -v top="$top" -v fine="$fine" -v mode="$mode" '
            /^[[:space:]]*#\[cfg\(test\)\]/ {
                getline
                if ($0 ~ /^[[:space:]]*(pub(\([a-z]+\))? )?mod [a-z_0-9]+;/) next
                exit
            }
            /^[[:space:]]*\/\// { next }
            {
                line = $0
                while (match(line, /crate::[a-z_][a-z_0-9]*(::[a-z_][a-z_0-9]*)?/)) {
                    path = substr(line, RSTART + 7, RLENGTH - 7)
                    line = substr(line, RSTART + RLENGTH)
                    split(path, parts, "::")
                    to = parts[1]
                    if (to == top) continue
                    if (mode == "--fine") {
                        # the target file module when the path names one, else the top module
                        print fine " -> " path
                    } else {
                        print top " -> " to
                    }
                }
            }' "$file"
    done | sort -u
)

if [[ $mode == --dot ]]; then
    echo 'digraph plimsoll {'
    echo '  rankdir=LR; node [shape=box];'
    sed 's/^\(.*\) -> \(.*\)$/  "\1" -> "\2";/' <<<"$edges"
    echo '}'
    exit 0
fi

echo "$edges"
[[ $mode == --fine ]] && exit 0

# Cycles between top-level modules: a depth-first search over the edges.
awk '
    { adj[$1] = adj[$1] " " $3; nodes[$1]; nodes[$3] }
    function visit(n,    i, k, m, list) {
        state[n] = 1
        stack[++depth] = n
        k = split(adj[n], list, " ")
        for (i = 1; i <= k; i++) {
            m = list[i]
            if (state[m] == 1) {
                cycle = m
                for (j = depth; j >= 1 && stack[j] != m; j--) cycle = stack[j] " -> " cycle
                print "cycle: " m " -> " cycle
                found = 1
            } else if (state[m] == 0) {
                visit(m)
            }
        }
        depth--
        state[n] = 2
    }
    END {
        for (n in nodes) state[n] = 0
        for (n in nodes) if (state[n] == 0) visit(n)
        if (found) { exit 1 }
        print "no cycle between top-level modules"
    }' <<<"$edges"
