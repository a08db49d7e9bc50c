# Shoal node image: `docker build -t shoal .` at the repository root.
# Build stage: the binary of the `dist` profile (`release` optimised as one
# unit: less memory per node, faster calls; see Cargo.toml).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked -p shoal-cli

# Runtime stage: the binary alone on a slim Debian, as an unprivileged user.
# Its uid and gid are fixed at 999 so Kubernetes (runAsUser, fsGroup) and
# existing volumes know them.
FROM debian:bookworm-slim
RUN groupadd --system --gid 999 shoal \
 && useradd --system --uid 999 --gid shoal --create-home --home-dir /var/lib/shoal shoal
COPY --from=build /src/target/dist/shoal /usr/local/bin/shoal
USER shoal
WORKDIR /var/lib/shoal
VOLUME /var/lib/shoal
# 7000: the cluster (libp2p over TCP, membership datagrams over UDP);
# 7070: the HTTP API.
EXPOSE 7000 7000/udp 7070
# Healthy while the HTTP API answers `GET /healthz` (served without the API
# token). Bash's /dev/tcp speaks the request, so the image needs no curl. It
# is liveness, not readiness: a node waiting for its cluster (`/readyz`) is
# healthy, and must not be restarted for it. A node started with another
# --http port needs its own check (compose: `healthcheck:`).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7070 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["shoal"]
CMD ["node", "--listen", "/ip4/0.0.0.0/tcp/7000", "--http", "0.0.0.0:7070", "--data-dir", "/var/lib/shoal"]
