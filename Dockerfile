# Build: the release binary, with the Lua scripts and migrations embedded.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY lua ./lua
COPY migrations ./migrations
# Cargo.toml names the bench and test targets: their files must exist to build.
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin lull

# Run: a small image with CA certificates for the platform APIs.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 lull
COPY --from=build /src/target/release/lull /usr/local/bin/lull
USER lull
ENV PORT=8000 LOG_FORMAT=json
EXPOSE 8000
# `lull healthcheck` asks /healthz on PORT over loopback (no shell, curl or wget needed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD ["lull", "healthcheck"]
ENTRYPOINT ["lull"]
CMD ["serve"]
