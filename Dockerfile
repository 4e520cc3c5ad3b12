# syntax=docker/dockerfile:1
#
# prestop-wait images. Targets (docker build --target NAME):
#
#   bin          FROM scratch, holding only /prestop-wait, a static binary.
#                Not meant to run by itself: `COPY --from=` it into any
#                proxy image (Envoy, Linkerd, Consul, Kuma, ...).
#   istio-proxy  istio/proxyv2:${ISTIO_VERSION} plus /usr/local/bin/prestop-wait.
#                The default (last) target; use it as the sidecar image.
#
#   docker build --target istio-proxy --build-arg ISTIO_VERSION=1.30.4 \
#     -t registry.example.com/istio/proxyv2-prestop-wait:1.30.4 .
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# (the builder stage runs for each target platform and builds that
# platform's static musl binary).

ARG RUST_VERSION=1.95.0
ARG ISTIO_VERSION=1.30.4

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
ARG TARGETARCH
WORKDIR /src
# The static musl target for this platform: the same build as
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
FROM istio/proxyv2:${ISTIO_VERSION} AS istio-proxy
COPY --from=bin /prestop-wait /usr/local/bin/prestop-wait
USER 1337:1337
