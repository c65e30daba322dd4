# syntax=docker/dockerfile:1
#
# dedupd's container image: built with the project's Rust toolchain, run on
# distroless (no shell, no package manager) as the non-root user 65532.
#
#   docker build -t registry.example.com/dedupd:0.1.0 .
#   docker run --rm -p 8080:8080 -e DEDUPD_CQL_NODES=host:9042 registry.example.com/dedupd:0.1.0
#
# The same image runs `dedupd serve` (the default) and `dedupd migrate`
# (the Kubernetes migration Job overrides the arguments); the CQL migrations
# are compiled into the binary. Pin both base images by digest in a release
# pipeline (FROM image:tag@sha256:...).

ARG RUST_VERSION=1.95

# Debian 12 on both sides: the binary links against the builder's glibc,
# and distroless/cc-debian12 ships the same glibc and libgcc.
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Only what the build reads (.dockerignore admits nothing else).
COPY Cargo.toml Cargo.lock ./
COPY cql ./cql
COPY src ./src
# Cargo loads every workspace member to read the workspace, so their
# sources come along; `cargo build` at the root builds the service alone.
COPY lab ./lab
COPY test-support ./test-support
# Cache mounts keep the crate registry and compiled dependencies between
# builds; the binary is copied out of the cached target directory. Default
# features only: the `failpoints` feature (fault injection) stays out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p dedupd \
    && install -D -m 0755 target/release/dedupd /out/dedupd

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="dedupd" \
      org.opencontainers.image.description="A claim ledger for at-least-once consumers, on Cassandra/ScyllaDB lightweight transactions" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/dedupd /usr/local/bin/dedupd
# The binary's default is loopback; in a container it must listen on all
# interfaces. API, probes and /metrics share this one port.
ENV DEDUPD_LISTEN=0.0.0.0:8080
EXPOSE 8080
# distroless's nonroot user, numerically, so runAsNonRoot can verify it.
USER 65532:65532
# dedupd writes nothing to disk: the root filesystem can be read-only.
# No HEALTHCHECK: there is no shell or curl here; Kubernetes probes
# /livez and /readyz instead.
ENTRYPOINT ["/usr/local/bin/dedupd"]
CMD ["serve"]
