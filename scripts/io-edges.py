#!/usr/bin/env python3
"""Which modules of src/ touch the outside world, and through what.

Lists, per kind (engine calls through bollard, the file system, processes,
the process environment, sockets), the non-test files that use it. Test code
is left out as in scripts/module-graph.sh (tests.rs, `#[cfg(test)] mod x;`
files, and everything after an inline `#[cfg(test)]`). Exits 1 when a module
outside the allowed set does I/O (ARCHITECTURE.md, "Layers").

    scripts/io-edges.py
"""
import glob
import os
import re
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

KINDS = {
    "engine": r"bollard::",
    "fs": r"std::fs|\bfs::(read|write|create|remove|rename|metadata|File)|File::(open|create)|OpenOptions",
    "process": r"std::process|Command::new",
    "env": r"std::env::var|env::var(_os)?\(",
    "net": r"tokio::net|TcpListener|UnixStream",
}
# Module (first path component under src/) -> kinds it may use.
ALLOWED = {
    "live": {"engine", "env", "net"},  # the engine boundary: reads (DOCKER_HOST, TLS env; legacy /system/df over the socket)
    "apply": {"engine", "env", "process"},  # writes; fault points for the crash tests
    "build": {"engine", "fs", "process"},  # build::engine (API), build::scan (context)
    "images": {"engine"},  # removing old images
    "keys": {"engine"},  # bollard's request/inspect types as data, no calls
    "hostpath": {"engine", "fs"},  # own-container discovery: /proc/self, one inspect
    "registry": {"engine", "fs", "env", "process"},  # docker's config.json, credential helpers
    "source": {"fs"},
    "state": {"fs", "env", "process"},
    "agent": {"engine", "fs", "env", "process", "net"},  # the agent's own edges
    "cli": {"fs", "env", "process"},
    "main": {"process"},
    "schema": {"fs"},  # writes the checked-in schemas on request
}
MOD_LINE = re.compile(r"\s*(pub(\([a-z]+\))? )?mod ([a-z_0-9]+);")
CFG_TEST = re.compile(r"\s*#\[cfg\(test\)\]")

test_files = set()
for f in glob.glob("src/**/*.rs", recursive=True):
    lines = open(f).read().split("\n")
    for i, line in enumerate(lines[:-1]):
        m = CFG_TEST.match(line) and MOD_LINE.match(lines[i + 1])
        if m:
            base = os.path.dirname(f) if f.endswith("mod.rs") or f == "src/lib.rs" else f[:-3]
            test_files.update({f"{base}/{m.group(3)}.rs", f"{base}/{m.group(3)}/mod.rs"})

found = {}
for f in sorted(glob.glob("src/**/*.rs", recursive=True)):
    if f.endswith("tests.rs") or f in test_files or f.startswith("src/fuzzing"):
        continue
    lines = open(f).read().split("\n")
    for i, line in enumerate(lines):
        if CFG_TEST.match(line):
            if i + 1 < len(lines) and MOD_LINE.match(lines[i + 1]):
                continue
            break
        if line.strip().startswith("//"):
            continue
        for kind, pat in KINDS.items():
            if re.search(pat, line):
                found.setdefault(kind, {}).setdefault(f[4:], 0)
                found[kind][f[4:]] += 1

bad = []
for kind, files in found.items():
    print(f"{kind}: " + " ".join(sorted(files)))
    for f in files:
        module = re.split(r"[/.]", f)[0]
        if kind not in ALLOWED.get(module, set()):
            bad.append(f"{f} uses {kind}")
if bad:
    print("\nI/O outside the allowed modules:\n  " + "\n  ".join(bad))
    sys.exit(1)
print("\nI/O only in the allowed modules")
