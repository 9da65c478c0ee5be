# The plimsoll CLI (and, later, agent) image, for hosts that can pull from a
# registry:  docker build -t plimsoll .
# On a machine without one, build the binary on the host and use
# Dockerfile.runtime instead (see there).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && install -m 0755 target/release/plimsoll /usr/local/bin/plimsoll

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The state directory the CLI and the agent share on a host.
RUN groupadd --gid 10001 plimsoll \
    && useradd --uid 10001 --gid plimsoll --no-create-home --home-dir /var/lib/plimsoll \
        --shell /usr/sbin/nologin plimsoll \
    && install -d -o plimsoll -g plimsoll -m 0750 /var/lib/plimsoll
COPY --from=build /usr/local/bin/plimsoll /usr/local/bin/plimsoll
USER plimsoll
WORKDIR /var/lib/plimsoll
ENTRYPOINT ["plimsoll"]
CMD ["--help"]
