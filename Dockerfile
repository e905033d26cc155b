# One image holding the three stock binaries: ballista-scheduler,
# ballista-executor and the ballista CLI. Build it from the repository's
# root (the README's "Containers and Kubernetes" section):
#
#   docker build -t ballista:0.1.0 .
#
# Stage 1 builds the binaries in release mode; stage 2 is a small Debian
# image with only them, running as an unprivileged user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p ballista-bin --bins

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/ballista --create-home ballista
COPY --from=build /src/target/release/ballista-scheduler /src/target/release/ballista-executor /src/target/release/ballista /usr/local/bin/
USER 10001
# The cluster key, catalog and work folders live here unless configured.
ENV BALLISTA_HOME=/var/lib/ballista
WORKDIR /var/lib/ballista
# gRPC and Flight (50050 scheduler, 50051 executor); HTTP: web UI, REST API,
# /metrics and health checks (50080 scheduler, 50081 executor).
EXPOSE 50050 50051 50080 50081
CMD ["ballista-scheduler", "--help"]
