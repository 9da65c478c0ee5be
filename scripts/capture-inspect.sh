#!/usr/bin/env bash
# Captures what this engine reports for containers plimsoll creates, for the
# pure round-trip tests of the engine mapping (src/keys/).
#
# For each group (default: every directory under tests/fixtures/inspect/),
# reconciles tests/fixtures/inspect/<group>/compose.yaml with plimsoll (its
# own create requests), saves `docker inspect` of the stack's containers and
# of their images into tests/fixtures/inspect/<group>.json, then removes the
# stack's containers, networks and volumes. Each compose file names a stack
# of its own (`plimsoll-inspect-<group>`); the script refuses to start when
# that stack already has containers, and only removes what carries its label.
#
#   scripts/capture-inspect.sh [GROUP...]
#   PLIMSOLL_BIN=path/to/plimsoll scripts/capture-inspect.sh
#
# Needs: a Docker engine, jq, the test images (scripts/test-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${PLIMSOLL_BIN:-}
if [[ -z $bin ]]; then
    cargo build --locked --quiet --bin plimsoll
    bin=$root/target/debug/plimsoll
fi

groups=("$@")
if [[ ${#groups[@]} -eq 0 ]]; then
    for d in tests/fixtures/inspect/*/; do
        groups+=("$(basename "$d")")
    done
fi

state=$(mktemp -d)
stack=
cleanup() {
    if [[ -n $stack ]]; then
        local label=io.plimsoll.stack=$stack
        docker ps -aq --filter "label=$label" | xargs -r docker rm -f -v >/dev/null
        docker network ls -q --filter "label=$label" | xargs -r docker network rm >/dev/null
        docker volume ls -q --filter "label=$label" | xargs -r docker volume rm >/dev/null
    fi
    stack=
}
trap 'cleanup; rm -rf "$state"' EXIT

for group in "${groups[@]}"; do
    dir=$root/tests/fixtures/inspect/$group
    name=$(sed -n 's/^name: //p' "$dir/compose.yaml")
    [[ -n $name ]] || { echo "$dir/compose.yaml: no name: key" >&2; exit 1; }
    if [[ -n $(docker ps -aq --filter "label=io.plimsoll.stack=$name") ]]; then
        echo "stack $name already has containers on this engine; remove them first" >&2
        exit 1
    fi
    stack=$name
    echo "== $group ($name)" >&2
    "$bin" --state-dir "$state" reconcile "$dir" >&2
    mapfile -t ids < <(docker ps -aq --filter "label=io.plimsoll.stack=$name")
    mapfile -t images < <(docker inspect --format '{{.Image}}' "${ids[@]}" | sort -u)
    jq -n --arg dir "$dir" \
        --argjson api "$(docker version --format '{{json .Server.APIVersion}}')" \
        --slurpfile containers <(docker inspect "${ids[@]}") \
        --slurpfile images <(docker image inspect "${images[@]}") \
        '{dir: $dir, api: $api,
          containers: ($containers[0] | sort_by(.Name)),
          images: $images[0]}' >"$dir.json"
    cleanup
done
