# Shoal node image: `docker build -t shoal .` at the repository root.
# Build stage: the release binary (the same single profile CI builds).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shoal-cli

# Runtime stage: the binary alone on a slim Debian, as an unprivileged user.
FROM debian:bookworm-slim
RUN useradd --system --create-home --home-dir /var/lib/shoal shoal
COPY --from=build /src/target/release/shoal /usr/local/bin/shoal
USER shoal
WORKDIR /var/lib/shoal
VOLUME /var/lib/shoal
# 7000: the cluster (libp2p over TCP, membership datagrams over UDP);
# 7070: the HTTP API.
EXPOSE 7000 7000/udp 7070
ENTRYPOINT ["shoal"]
CMD ["node", "--listen", "/ip4/0.0.0.0/tcp/7000", "--http", "0.0.0.0:7070", "--data-dir", "/var/lib/shoal"]
