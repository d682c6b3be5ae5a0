# syntax=docker/dockerfile:1
# rsolv-platform: the release server binary, the built site and Leptos.toml,
# run as a non-root user. Build from the repository root:
#
#   docker build -t rsolv-platform .
#
# Every tool comes from a registry (crates.io, npm, Debian), never from a
# GitHub download (see /work/shared/TOOLCHAIN.md). tests/deploy.rs checks
# this file against the CLI and the manifests in deploy/.

# --- build -------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-unknown-unknown
# The tools are built without LTO (cargo-leptos with its own profile takes 45
# CPU-minutes, this way ~11); the server keeps the crate's release profile.
ARG TOOL_PROFILE="CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16"
RUN env $TOOL_PROFILE cargo install --locked cargo-leptos --version 0.3.10 --features no_downloads
WORKDIR /src
# The wasm-bindgen CLI must be the exact version in Cargo.lock.
COPY Cargo.toml Cargo.lock ./
RUN env $TOOL_PROFILE cargo install wasm-bindgen-cli --version "$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print}' Cargo.lock)"
# Tailwind CSS and wasm-opt from npm (cargo-leptos finds node_modules/.bin).
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN cargo leptos build --release \
 && strip target/release/rsolv-platform

# --- run ---------------------------------------------------------------------
FROM debian:bookworm-slim AS run
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin rsolv
WORKDIR /app
COPY --from=build /src/target/release/rsolv-platform /usr/local/bin/rsolv-platform
COPY --from=build /src/target/site /app/target/site
COPY --from=build /src/Leptos.toml /app/Leptos.toml
USER 10001:10001
# Listen on every interface inside the container; logs as JSON lines.
ENV LEPTOS_SITE_ADDR=0.0.0.0:3000 \
    LEPTOS_CONFIG=/app/Leptos.toml \
    LOG_FORMAT=json
EXPOSE 3000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rsolv-platform"]
CMD ["serve"]
