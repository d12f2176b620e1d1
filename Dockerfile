# Images of the two servers, one per build target:
#   docker build --target control-plane -t switchyard/control-plane:0.1.0 .
#   docker build --target data-plane -t switchyard/data-plane:0.1.0 .
# One builder stage compiles both (one dependency build, shared cache); each
# image holds one binary on a distroless base (glibc, CA certificates, no
# shell) and runs as the numeric non-root user 65532.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
ARG RUST_VERSION
# The image's toolchain is the one rust-toolchain.toml pins; naming it keeps
# rustup from fetching that file's extra components (rustfmt, clippy).
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
WORKDIR /src
COPY . .
# protoc needs no system package: .cargo/config.toml points build scripts at
# scripts/protoc, which runs the one the protoc-bin-vendored crate ships.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p switchyard-control-plane -p switchyard-data-plane \
    && mkdir -p /out \
    && cp target/release/switchyard-control-plane target/release/switchyard-data-plane /out/

# Same Debian release as the builder, so the binaries find the glibc they were
# linked against.
FROM gcr.io/distroless/cc-debian12:nonroot AS control-plane
COPY --from=builder /out/switchyard-control-plane /usr/local/bin/switchyard-control-plane
# Writable home: the default SQLite data directory is relative to it.
WORKDIR /home/nonroot
USER 65532:65532
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/switchyard-control-plane"]

FROM gcr.io/distroless/cc-debian12:nonroot AS data-plane
COPY --from=builder /out/switchyard-data-plane /usr/local/bin/switchyard-data-plane
# Writable home: the default state directory is relative to it.
WORKDIR /home/nonroot
USER 65532:65532
EXPOSE 8080 50061
ENTRYPOINT ["/usr/local/bin/switchyard-data-plane"]
