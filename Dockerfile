# The plimsoll agent image, for hosts that can pull the public Rust and Debian
# images from a registry:
#
#   docker build -t plimsoll .
#   docker compose -f deploy/agent/compose.yaml up -d     # see there
#
# On a machine without a registry, build the binary on the host and use
# Dockerfile.runtime (the classic builder builds every stage, so this file's
# `FROM rust` stage cannot be part of an offline build).
#
# Build arguments: RUST_IMAGE (the build stage, default rust:1-bookworm) and
# BASE (the runtime, default debian:bookworm-slim). Both must be the same
# Debian release: the binary links glibc, libssl3 and zlib dynamically.
#
# The image: `plimsoll agent` by default (any other command works too:
# `docker run --rm plimsoll validate /repo`), as uid 10001 with the state in the
# volume /var/lib/plimsoll, JSON logs, the endpoint on 0.0.0.0:9300 inside
# and a HEALTHCHECK that asks it (`plimsoll healthcheck`, no curl).
# Keep the runtime stage identical to Dockerfile.runtime.
ARG RUST_IMAGE=rust:1-bookworm
ARG BASE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build needs (.dockerignore keeps the context small too).
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked \
    && install -m 0755 target/release/plimsoll /usr/local/bin/plimsoll

FROM ${BASE}
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# uid/gid 10001: outside the range of host users and system accounts. The
# state directory belongs to it; a new named volume mounted there inherits
# that ownership. /etc/gitconfig: libgit2 refuses a repository owned by another
# user (git's safe.directory check), and a local repository bind-mounted into
# the container (--repo file:///repo) belongs to a host user; the agent only
# reads it, runs no hooks, and opens no other repository but its own clone.
RUN groupadd --gid 10001 plimsoll \
    && useradd --uid 10001 --gid plimsoll --no-create-home --home-dir /var/lib/plimsoll \
        --shell /usr/sbin/nologin plimsoll \
    && install -d -o plimsoll -g plimsoll -m 0750 /var/lib/plimsoll \
    && printf '[safe]\n\tdirectory = *\n' >/etc/gitconfig
COPY --from=build /usr/local/bin/plimsoll /usr/local/bin/plimsoll
# Fails the build when the base lacks a library the binary needs.
RUN plimsoll --version
# JSON log lines on stderr; the state directory of a non-root user would
# otherwise be $XDG_STATE_HOME/plimsoll; the endpoint must listen on every
# address of the container for a published port to reach it (publish it on
# 127.0.0.1 only). `plimsoll healthcheck` reads PLIMSOLL_LISTEN too.
ENV PLIMSOLL_LOG_FORMAT=json \
    PLIMSOLL_STATE_DIR=/var/lib/plimsoll \
    PLIMSOLL_LISTEN=0.0.0.0:9300 \
    USER=plimsoll
# The agent's own container is plimsoll's, never an "unknown container".
LABEL io.plimsoll.agent="true"
VOLUME /var/lib/plimsoll
EXPOSE 9300
# Non-root; the Docker socket's group must be added at run time
# (`docker run --group-add "$(stat -c %g /var/run/docker.sock)"`, Compose
# `group_add`), or run it as root (`--user 0`) where that is not possible.
USER 10001:10001
WORKDIR /var/lib/plimsoll
# GET /healthz of the running agent, without curl. It turns unhealthy when the
# agent's loop has stopped; a sync failing (git unreachable, a broken revision)
# keeps it healthy, that is reported in /status and /metrics.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["plimsoll", "healthcheck"]
# SIGTERM: the current apply step finishes (a replacement in flight is rolled
# back), nothing new starts, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["plimsoll"]
CMD ["agent"]
