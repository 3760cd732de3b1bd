# syntax=docker/dockerfile:1
# Weft's three images from one Dockerfile, one target each (`make images` builds them all):
#   docker build --target operator -t ghcr.io/weft-mesh/weft-operator:0.1.0 .
#   docker build --target webhook  -t ghcr.io/weft-mesh/weft-webhook:0.1.0 .
#   docker build --target proxy    -t ghcr.io/weft-mesh/weft-proxy:0.1.0 .
#   docker build --target e2e      -t ghcr.io/weft-mesh/weft-e2e:0.1.0 .   (test apps: weft-echo, weft-load)
# One file because the three binaries come from one Cargo workspace: the build context is the repository root in
# every case (path dependencies), and one shared `build` stage compiles the workspace's heavy dependencies
# (k8s-openapi, envoy-types, tonic) once for all three images instead of three times.

# Builder and runtimes share Debian 12 (bookworm), so the binaries' glibc matches the runtime's.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG DISTROLESS_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds (BuildKit, the default builder since Docker 23).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weft-operator -p weft-webhook -p weft-proxy -p weft-e2e --bins \
 && mkdir -p /out \
 && cp target/release/weft-operator target/release/weft-webhook target/release/weft-proxy \
       target/release/weft-echo target/release/weft-load /out/

# weft-operator: distroless (glibc, CA certificates, no shell), user nonroot 65532 as the chart runs it.
FROM ${DISTROLESS_IMAGE} AS operator
COPY --from=build /out/weft-operator /usr/local/bin/weft-operator
USER 65532:65532
# xDS over TLS with certificates (with a CA), plaintext xDS (without one, or when asked), then /healthz,
# /readyz and /metrics.
EXPOSE 15012 15010 9090
ENTRYPOINT ["/usr/local/bin/weft-operator"]

# weft-webhook: same base; HTTPS admission webhook.
FROM ${DISTROLESS_IMAGE} AS webhook
COPY --from=build /out/weft-webhook /usr/local/bin/weft-webhook
USER 65532:65532
EXPOSE 9443
ENTRYPOINT ["/usr/local/bin/weft-webhook"]

# weft-proxy: Debian slim, because `weft-proxy init` (the injected weft-init container, run as root with
# NET_ADMIN/NET_RAW) needs the iptables binaries. The sidecar itself runs as UID 1337, whose traffic iptables skips.
FROM ${DEBIAN_IMAGE} AS proxy
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1337 weft-proxy \
 && useradd --system --uid 1337 --gid 1337 --no-create-home --shell /usr/sbin/nologin weft-proxy
COPY --from=build /out/weft-proxy /usr/local/bin/weft-proxy
USER 1337:1337
# Outbound capture, inbound capture, admin (localhost only), health and metrics.
EXPOSE 15001 15006 15000 15020
ENTRYPOINT ["/usr/local/bin/weft-proxy"]

# weft-e2e: the cluster e2e suite's applications (not part of Weft): weft-echo (the reviews backends) and
# weft-load (the client), on Debian slim so the client pod can `sleep` between `kubectl exec` sessions.
FROM ${DEBIAN_IMAGE} AS e2e
COPY --from=build /out/weft-echo /out/weft-load /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weft-echo"]
