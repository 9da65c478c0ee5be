#!/usr/bin/env bash
# Build the images that plimsoll's tests and examples use, offline: this
# machine's Docker engine cannot pull from any registry, so every image is made
# from Debian packages and `docker import`.
#
#   plimsoll-example/busybox:1        the host's static busybox and its applets
#   plimsoll-example/postgres:15      debootstrap minbase + postgresql-15, with an
#                                     entrypoint modelled on the official image
#   plimsoll-example/debian:bookworm  debootstrap minbase (+ ca-certificates), the
#                                     base for the plimsoll runtime image
#
# Usage: scripts/test-images.sh [busybox] [postgres] [debian]   (default: all)
#
# Idempotent: an image whose tag already exists is skipped (set
# PLIMSOLL_REBUILD_IMAGES=1 to rebuild). Everything is logged to stderr.
# Needs root for apt-get and debootstrap. Environment:
#   DEBIAN_MIRROR   Debian archive to debootstrap from (default: the one this
#                   machine's apt uses, else http://deb.debian.org/debian)
#   DEBIAN_SUITE    default bookworm
# shellcheck disable=SC2016 # the scripts run inside containers expand there
set -euo pipefail

BUSYBOX_TAG=plimsoll-example/busybox:1
POSTGRES_TAG=plimsoll-example/postgres:15
DEBIAN_TAG=plimsoll-example/debian:bookworm
SUITE="${DEBIAN_SUITE:-bookworm}"
PG_MAJOR=15

log() { printf 'test-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    echo "usage: $0 [busybox] [postgres] [debian]   (default: all)" >&2
    exit 2
}

want_busybox=0 want_postgres=0 want_debian=0
if [[ $# -eq 0 ]]; then
    want_busybox=1 want_postgres=1 want_debian=1
fi
for arg in "$@"; do
    case "$arg" in
        busybox) want_busybox=1 ;;
        postgres | postgresql) want_postgres=1 ;;
        debian) want_debian=1 ;;
        all) want_busybox=1 want_postgres=1 want_debian=1 ;;
        -h | --help) usage ;;
        *) log "unknown image '$arg'"; usage ;;
    esac
done

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

WORK=""
cleanup() {
    local rc=$?
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        # debootstrap mounts /proc and /sys inside its target; an interrupted run
        # can leave them mounted, and rm must never descend into them.
        local mp
        while read -r mp; do
            umount -l "$mp" 2>/dev/null || true
        done < <(awk -v w="$WORK" 'index($2, w "/") == 1 { print $2 }' /proc/mounts | sort -r)
        rm -rf --one-file-system "$WORK" || log "could not remove $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

workdir() {
    if [[ -z "$WORK" ]]; then
        WORK="$(mktemp -d "${TMPDIR:-/tmp}/plimsoll-images.XXXXXX")"
        log "working in $WORK"
    fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

skip_existing() {
    local tag="$1"
    if [[ "${PLIMSOLL_REBUILD_IMAGES:-0}" != 1 ]] && image_exists "$tag"; then
        log "$tag already exists, skipping"
        return 0
    fi
    return 1
}

apt_install() {
    [[ "$(id -u)" == 0 ]] || die "need root to apt-get install $*"
    log "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends "$@" >&2
    fi
}

# The Debian archive this machine's apt uses for $SUITE (deb822 .sources or
# one-line .list), so that debootstrap goes where apt is known to reach.
detect_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && files+=("$f")
    done
    local found=""
    if [[ ${#files[@]} -gt 0 ]]; then
        found="$(awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && !done) {
                    split(uris, u, " "); print u[1]; done = 1
                }
                types = ""; uris = ""; suites = ""
            }
            FNR == 1 { flush() }
            /^[ \t]*#/ { next }
            FILENAME ~ /\.sources$/ {
                if ($0 ~ /^[ \t]*$/) { flush(); next }
                line = $0; key = line; sub(/:.*/, "", key); sub(/^[^:]*:[ \t]*/, "", line)
                if (key == "Types") types = line
                else if (key == "URIs") uris = line
                else if (key == "Suites") suites = line
                else if (key == "Enabled" && tolower(line) == "no") types = ""
                next
            }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                if ($(i + 1) == suite && !done) { print $i; done = 1 }
            }
            END { flush() }
        ' "${files[@]}")"
    fi
    echo "${found:-http://deb.debian.org/debian}"
}

# debootstrap --variant=minbase SUITE into $1, with extra packages $2 (comma list).
bootstrap() {
    local dir="$1" include="${2:-}"
    command -v debootstrap >/dev/null || apt_install debootstrap
    [[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
    local mirror args=(--variant=minbase "--cache-dir=$WORK/debs")
    mirror="$(detect_mirror)"
    mkdir -p "$WORK/debs"
    [[ -n "$include" ]] && args+=("--include=$include")
    log "debootstrap ${args[*]} $SUITE $dir $mirror"
    local start=$SECONDS
    if ! debootstrap "${args[@]}" "$SUITE" "$dir" "$mirror" >"$dir.log" 2>&1; then
        tail -n 30 "$dir.log" >&2
        [[ -f "$dir/debootstrap/debootstrap.log" ]] && tail -n 30 "$dir/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (log above)"
    fi
    log "debootstrap done in $((SECONDS - start)) s"
}

# Shrink a debootstrapped tree: package caches, indexes, docs, translations.
strip_rootfs() {
    local dir="$1"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
        "$dir"/var/lib/apt/lists/* "$dir"/var/cache/debconf/*-old \
        "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
        "$dir"/usr/share/locale/* "$dir"/usr/share/lintian \
        "$dir"/var/log/*.log "$dir"/var/log/apt/* "$dir"/debootstrap
    mkdir -p "$dir"/var/lib/apt/lists/partial
    # Like the official debian images: no caches or docs from later installs.
    cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    echo 'APT::Install-Recommends "false";' >"$dir/etc/apt/apt.conf.d/docker-no-recommends"
    # The engine bind-mounts these at run time.
    : >"$dir/etc/hostname"
    rm -f "$dir/etc/resolv.conf"
    : >"$dir/etc/resolv.conf"
}

# tar a root filesystem into `docker import` with the given Dockerfile-style
# changes. `docker import --change` of engine 20.10 refuses STOPSIGNAL (and
# HEALTHCHECK, LABEL, SHELL): those are added by a metadata-only `docker build`
# FROM the imported image, which needs no registry.
import_rootfs() {
    local dir="$1" tag="$2"
    shift 2
    local changes=() later=() c
    for c in "$@"; do
        case "${c%% *}" in
            STOPSIGNAL | HEALTHCHECK | LABEL | SHELL) later+=("$c") ;;
            *) changes+=(--change "$c") ;;
        esac
    done
    local import_tag="$tag" old_id
    [[ ${#later[@]} -gt 0 ]] && import_tag="$tag-rootfs-$$"
    # A rebuild (PLIMSOLL_REBUILD_IMAGES=1) drops the image it replaces.
    old_id="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
    log "docker import $tag"
    tar -C "$dir" --numeric-owner \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -c . | docker import "${changes[@]}" \
        --message "built offline by scripts/test-images.sh" - "$import_tag" >/dev/null
    if [[ ${#later[@]} -gt 0 ]]; then
        log "docker build $tag (${later[*]})"
        local ok=0
        {
            echo "FROM $import_tag"
            printf '%s\n' "${later[@]}"
        } | docker build --quiet --tag "$tag" - >/dev/null 2>"$WORK/build.log" || ok=$?
        docker image rm "$import_tag" >/dev/null 2>&1 || true
        if [[ $ok != 0 ]]; then
            cat "$WORK/build.log" >&2
            die "docker build of $tag failed"
        fi
    fi
    if [[ -n "$old_id" && "$old_id" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
        docker image rm "$old_id" >/dev/null 2>&1 || true
    fi
}

# Run a throwaway verification container; on failure remove the fresh tag so
# that the next run builds it again.
verify() {
    local tag="$1" what="$2"
    shift 2
    local out
    if ! out="$(docker run --rm --network none "$@" 2>&1)"; then
        log "verification '$what' of $tag failed: $out"
        docker image rm "$tag" >/dev/null 2>&1 || true
        die "$tag does not work"
    fi
    log "verified $tag: $what"
}

# ---------------------------------------------------------------------------
build_busybox() {
    skip_existing "$BUSYBOX_TAG" && return 0
    local start=$SECONDS bb=/bin/busybox
    # Needs the static build: the dynamic one (package busybox) has no libc in the image.
    if [[ ! -x "$bb" ]] || ldd "$bb" >/dev/null 2>&1; then
        apt_install busybox-static
    fi
    [[ -x "$bb" ]] || die "$bb missing after installing busybox-static"
    ldd "$bb" >/dev/null 2>&1 && die "$bb is dynamically linked"

    workdir
    local root="$WORK/busybox"
    log "assembling busybox root in $root"
    mkdir -p "$root"/{bin,etc,root,tmp,home,proc,sys,dev,run,var/tmp,var/www,usr}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 0700 "$root/root"
    install -m 0755 "$bb" "$root/bin/busybox"
    local applet n=0
    while read -r applet; do
        [[ -z "$applet" || "$applet" == busybox ]] && continue
        ln -sf busybox "$root/bin/$applet"
        n=$((n + 1))
    done < <("$bb" --list)
    log "linked $n applets"
    # Common absolute paths (/usr/bin/env, /sbin/...) resolve to the applets.
    ln -s bin "$root/sbin"
    ln -s ../bin "$root/usr/bin"
    ln -s ../bin "$root/usr/sbin"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nobody:x:65534:
EOF
    : >"$root/etc/hostname"
    : >"$root/etc/hosts"
    : >"$root/etc/resolv.conf"
    import_rootfs "$root" "$BUSYBOX_TAG" 'CMD ["sh"]' 'ENV PATH=/bin'

    verify "$BUSYBOX_TAG" "sh, sleep, wget, nc" "$BUSYBOX_TAG" sh -c '
        set -e
        sleep 0.1
        wget --help >/dev/null 2>&1 || [ $? -eq 1 ]
        nc --help >/dev/null 2>&1 || [ $? -eq 1 ]
        command -v wget nc httpd sleep >/dev/null
        echo ok'
    verify "$BUSYBOX_TAG" "httpd serves a file, wget and nc fetch it" "$BUSYBOX_TAG" sh -c '
        set -e
        mkdir -p /tmp/www
        echo plimsoll-ok >/tmp/www/index.html
        httpd -p 127.0.0.1:8080 -h /tmp/www
        i=0; until wget -q -O /tmp/got http://127.0.0.1:8080/index.html; do
            i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
        grep -q plimsoll-ok /tmp/got
        printf "GET /index.html HTTP/1.0\r\n\r\n" | nc 127.0.0.1 8080 | grep -q plimsoll-ok'
    log "built $BUSYBOX_TAG in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------
write_pg_entrypoint() {
    local dest="$1"
    cat >"$dest" <<'ENTRYPOINT'
#!/usr/bin/env bash
# Entrypoint of plimsoll-example/postgres, modelled on the official postgres
# image's docker-entrypoint.sh. Honours POSTGRES_PASSWORD (required unless
# POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER (default postgres),
# POSTGRES_DB (default: the user), POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), PGDATA, the *_FILE
# variants of the first three, and /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}.
# As in the official image, while a new cluster is initialised a temporary
# server listens on the Unix socket only (no TCP): a `pg_isready -U postgres`
# healthcheck may pass then, so TCP clients retry until the real server is up.
# And a healthcheck with a short interval and no start period may report
# 'unhealthy' while initdb runs, before it turns healthy.
set -Eeo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date '+%F %T')" "$*" >&2; }

# file_env VAR [DEFAULT]: VAR or the contents of the file named by VAR_FILE.
file_env() {
    local var="$1" fileVar="${1}_FILE" def="${2:-}"
    if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
        log "error: both $var and $fileVar are set (but are exclusive)"
        exit 1
    fi
    local val="$def"
    if [ "${!var:-}" ]; then
        val="${!var}"
    elif [ "${!fileVar:-}" ]; then
        val="$(<"${!fileVar}")"
    fi
    export "$var"="$val"
    unset "$fileVar"
}

setup_env() {
    : "${PGDATA:=/var/lib/postgresql/data}"
    export PGDATA
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=}"
    DATABASE_ALREADY_EXISTS=
    if [ -s "$PGDATA/PG_VERSION" ]; then
        DATABASE_ALREADY_EXISTS=true
    fi
}

create_db_directories() {
    local user
    user="$(id -u)"
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    mkdir -p /var/run/postgresql || :
    chmod 03775 /var/run/postgresql || :
    if [ "$user" = 0 ]; then
        find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
        find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
    fi
}

verify_minimum_env() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<'EOE'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
EOE
        exit 1
    fi
    if [ "${#POSTGRES_PASSWORD}" -ge 100 ]; then
        log "warning: POSTGRES_PASSWORD is 100 characters or longer"
    fi
}

init_database_dir() {
    # POSTGRES_INITDB_ARGS is a list of shell words, as in the official image.
    if [ -n "$POSTGRES_PASSWORD" ]; then
        eval 'initdb --username="$POSTGRES_USER" -D "$PGDATA" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
    else
        eval 'initdb --username="$POSTGRES_USER" -D "$PGDATA" '"$POSTGRES_INITDB_ARGS"
    fi
}

setup_conf() {
    local method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [ "$method" = trust ]; then
        log "warning: POSTGRES_HOST_AUTH_METHOD=trust: any host may connect without a password"
    fi
    {
        echo
        echo "# added by docker-entrypoint.sh"
        echo "listen_addresses = '*'"
        if [ "$method" = scram-sha-256 ] || [ "$method" = md5 ]; then
            echo "password_encryption = $method"
        fi
    } >>"$PGDATA/postgresql.conf"
    {
        echo
        echo "host all all all $method"
    } >>"$PGDATA/pg_hba.conf"
}

temp_server_start() {
    INIT_LOG="$(mktemp /tmp/pg-init.XXXXXX)"
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w -t 60 -l "$INIT_LOG" \
        -o "-c listen_addresses='' -p 5432" \
        start >/dev/null || { cat "$INIT_LOG" >&2; exit 1; }
}

temp_server_stop() {
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    rm -f "$INIT_LOG"
}

run_psql() {
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

setup_db() {
    if [ "$POSTGRES_DB" = postgres ]; then
        return
    fi
    local exists
    exists="$(run_psql --dbname postgres --set db="$POSTGRES_DB" --tuples-only --no-align <<'EOSQL'
SELECT 1 FROM pg_database WHERE datname = :'db';
EOSQL
)"
    if [ -z "$exists" ]; then
        run_psql --dbname postgres --set db="$POSTGRES_DB" <<'EOSQL'
CREATE DATABASE :"db";
EOSQL
        log "created database $POSTGRES_DB"
    fi
}

process_init_files() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    log "running $f"
                    "$f"
                else
                    log "sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql) log "running $f"; run_psql --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | run_psql --dbname "$POSTGRES_DB" ;;
            *) log "ignoring $f" ;;
        esac
    done
}

# Drop root for the given command: setpriv (util-linux) is in every minbase.
as_postgres() {
    if command -v setpriv >/dev/null; then
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
    fi
    exec runuser -u postgres -- "$@"
}

main() {
    # `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`.
    if [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi

    if [ "$1" = postgres ] && ! [ "${PLIMSOLL_PG_NO_INIT:-}" ]; then
        setup_env
        create_db_directories
        if [ "$(id -u)" = 0 ]; then
            # Re-run this script as postgres (HOME and USER follow the user).
            export HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres
            as_postgres "$(readlink -f "${BASH_SOURCE[0]}")" "$@"
        fi

        if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
            verify_minimum_env
            log "initialising a new cluster in $PGDATA"
            init_database_dir
            setup_conf
            temp_server_start
            setup_db
            process_init_files
            temp_server_stop
            log "PostgreSQL init process complete; ready for start up"
        else
            log "PostgreSQL database directory appears to contain a database; skipping initialization"
        fi
    fi

    exec "$@"
}

main "$@"
ENTRYPOINT
    chmod 0755 "$dest"
}

build_postgres() {
    skip_existing "$POSTGRES_TAG" && return 0
    local start=$SECONDS
    workdir
    local root="$WORK/postgres"
    bootstrap "$root" "postgresql-$PG_MAJOR"

    # Debian's postinst made a cluster 'main' the image does not use: the
    # entrypoint runs initdb into $PGDATA itself.
    rm -rf "$root/var/lib/postgresql/$PG_MAJOR" "$root/etc/postgresql/$PG_MAJOR/main"
    # JIT is optional: without llvmjit.so the server simply runs without it, and
    # LLVM is a third of the image.
    rm -rf "$root/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit.so" \
        "$root/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit_types.bc" \
        "$root/usr/lib/postgresql/$PG_MAJOR/lib/bitcode" \
        "$root"/usr/lib/x86_64-linux-gnu/libLLVM-*.so* \
        "$root"/usr/lib/x86_64-linux-gnu/libz3.so*
    strip_rootfs "$root"

    mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql" "$root/docker-entrypoint-initdb.d"
    local pg_uid pg_gid
    pg_uid="$(awk -F: '$1 == "postgres" { print $3 }' "$root/etc/passwd")"
    pg_gid="$(awk -F: '$1 == "postgres" { print $4 }' "$root/etc/passwd")"
    [[ -n "$pg_uid" && -n "$pg_gid" ]] || die "no postgres user in the debootstrapped tree"
    chown "$pg_uid:$pg_gid" "$root/var/lib/postgresql" "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
    chmod 0700 "$root/var/lib/postgresql/data"
    chmod 03775 "$root/var/run/postgresql"
    write_pg_entrypoint "$root/usr/local/bin/docker-entrypoint.sh"
    ln -s usr/local/bin/docker-entrypoint.sh "$root/docker-entrypoint.sh"
    [[ -x "$root/usr/lib/postgresql/$PG_MAJOR/bin/pg_isready" ]] || die "pg_isready missing"

    import_rootfs "$root" "$POSTGRES_TAG" \
        "ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "ENV PG_MAJOR=$PG_MAJOR" \
        'ENV LANG=C.UTF-8' \
        'ENV PGDATA=/var/lib/postgresql/data' \
        'VOLUME /var/lib/postgresql/data' \
        'ENTRYPOINT ["docker-entrypoint.sh"]' \
        'CMD ["postgres"]' \
        'EXPOSE 5432' \
        'STOPSIGNAL SIGINT'

    verify "$POSTGRES_TAG" "initdb, server start, pg_isready, login over TCP" \
        -e POSTGRES_PASSWORD=verify-secret -e POSTGRES_USER=app -e POSTGRES_DB=appdb \
        --entrypoint bash "$POSTGRES_TAG" -c '
        set -e
        docker-entrypoint.sh postgres >/tmp/pg.log 2>&1 &
        i=0; until pg_isready -q -h 127.0.0.1 -U app; do
            i=$((i+1)); [ $i -lt 120 ] || { cat /tmp/pg.log; exit 1; }; sleep 0.5; done
        PGPASSWORD=verify-secret psql -h 127.0.0.1 -U app -d appdb -tAc "select 40 + 2" | grep -qx 42
        grep -q "^host all all all scram-sha-256" "$PGDATA/pg_hba.conf"'
    log "built $POSTGRES_TAG in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------
build_debian() {
    skip_existing "$DEBIAN_TAG" && return 0
    local start=$SECONDS
    workdir
    local root="$WORK/debian"
    # ca-certificates: the plimsoll agent talks HTTPS to git servers.
    bootstrap "$root" ca-certificates
    strip_rootfs "$root"
    import_rootfs "$root" "$DEBIAN_TAG" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV LANG=C.UTF-8' \
        'CMD ["bash"]'
    verify "$DEBIAN_TAG" "bash, useradd, CA bundle" "$DEBIAN_TAG" bash -c '
        set -e
        command -v useradd >/dev/null
        test -s /etc/ssl/certs/ca-certificates.crt
        echo ok'
    log "built $DEBIAN_TAG in $((SECONDS - start)) s"
}

total=$SECONDS
if [[ $want_busybox == 1 ]]; then build_busybox; fi
if [[ $want_debian == 1 ]]; then build_debian; fi
if [[ $want_postgres == 1 ]]; then build_postgres; fi
log "done in $((SECONDS - total)) s"
