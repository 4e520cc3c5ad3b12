# syntax=docker/dockerfile:1
#
# prestop-wait images. Targets (docker build --target NAME):
#
#   bin          FROM scratch, holding only /prestop-wait, a static binary.
#                Run it as an init container (`install DIR`), mount it as an
#                image volume, or `COPY --from=` it into any proxy image.
#   istio-proxy  ${PROXY_IMAGE} (istio/proxyv2) plus /usr/local/bin/prestop-wait.
#                The default (last) target; use it as the sidecar image.
#
#   docker build --target istio-proxy --build-arg ISTIO_VERSION=1.30.4 \
#     -t registry.example.com/istio/proxyv2-prestop-wait:1.30.4 .
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# The builder stage runs on the build machine's platform and cross-compiles
# each target platform's static musl binary (rust-lld links arm64; see
# .cargo/config.toml), so nothing is built under emulation.
#
# Mirrored registries: --build-arg RUST_IMAGE=... and PROXY_IMAGE=...
# Without a registry: `--build-context builder=DIR` replaces the builder
# stage with a directory holding a prebuilt static `prestop-wait`.

ARG RUST_VERSION=1.95.0
ARG RUST_IMAGE=docker.io/library/rust:${RUST_VERSION}-slim-bookworm
ARG ISTIO_VERSION=1.30.4
ARG PROXY_IMAGE=docker.io/istio/proxyv2:${ISTIO_VERSION}

FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS builder
ARG TARGETARCH
WORKDIR /src
# The static musl target for the platform being built: the same build as
# `cargo build --release --target x86_64-unknown-linux-musl` on amd64.
RUN case "${TARGETARCH:-amd64}" in \
      amd64) triple=x86_64-unknown-linux-musl ;; \
      arm64) triple=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && rustup target add "$triple" \
    && echo "$triple" > /musl-target
# The whole context (see .dockerignore): Cargo.toml names targets such as
# benches/ that must exist for the manifest to load.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    triple="$(cat /musl-target)" \
    && cargo build --release --locked --target "$triple" \
    && cp "target/$triple/release/prestop-wait" /prestop-wait

# Only the binary. No shell, no libc: it needs neither.
FROM scratch AS bin
COPY --from=builder /prestop-wait /prestop-wait
USER 65532:65532
ENTRYPOINT ["/prestop-wait"]

# The Istio sidecar image with the hook binary. Entrypoint (pilot-agent) and
# everything else stay Istio's; the hook runs as the proxy's uid 1337.
FROM ${PROXY_IMAGE} AS istio-proxy
COPY --from=bin /prestop-wait /usr/local/bin/prestop-wait
USER 1337:1337
