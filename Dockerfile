# syntax=docker/dockerfile:1
#
# phone-verify container image: build on the official Rust image, run on distroless.
#
#   docker build -t phone-verify .
#   docker run --rm -p 8080:8080 phone-verify          # SQLite in /home/nonroot/data, console SMS provider
#
# Everything else is configured by environment variables (see .env.example); docker-compose.yml runs it
# on Postgres.

# ---- build stage ---------------------------------------------------------------------------------
# The crate needs Rust 1.94+ (edition 2024). bookworm matches the glibc of the runtime image below
# (distroless/cc-debian12 is Debian 12 "bookworm"), so the binary never needs a newer glibc than it finds.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Strip symbols from the release binary without touching Cargo.toml (the same as `strip = true` in
# [profile.release]): the stripped binary is a fraction of the size of one with symbols.
ENV CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_TERM_COLOR=never

# Dependency caching: a dummy-source layer rather than cargo-chef. This is one crate (one lib, one bin,
# no workspace, no build.rs), so the manifest and lock file fully describe the dependencies; cargo-chef
# would add a tool to download and compile in the image for no gain here. As long as Cargo.toml and
# Cargo.lock do not change, Docker reuses this layer and only the crate itself is recompiled.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources. Migrations are embedded in the binary by sqlx::migrate! at compile time, so they are
# needed here and never at run time. `touch` makes the real files newer than the dummy ones built above
# (COPY keeps the files' modification times), so cargo rebuilds the crate instead of keeping the dummy.
# /out/data: the SQLite default (DATABASE_URL=sqlite://data/phone-verify.db) is relative to the working
# directory; data/ is made here so that it can be copied into the image owned by the non-root user.
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin phone-verify \
    && install -D -m 0755 target/release/phone-verify /out/phone-verify \
    && mkdir -p /out/data

# ---- runtime stage -------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc_s and CA certificates, no shell, no package manager (about 23-25 MB).
# The binary links only glibc (libc, libm, libgcc_s), so "cc" is the smallest distroless image that
# runs it. reqwest verifies TLS with the OS certificate store (rustls-platform-verifier), and
# distroless/cc ships that store as /etc/ssl/certs/ca-certificates.crt: calls to Twilio work without
# installing anything. The :nonroot tag runs as uid/gid 65532 ("nonroot") with home /home/nonroot.
FROM gcr.io/distroless/cc-debian12:nonroot

# Only the binary: migrations are inside it.
COPY --from=build /out/phone-verify /usr/local/bin/phone-verify
# data/ owned by the non-root user, for the SQLite default. Mount a volume here to keep the data:
#   docker run -v phone-verify-data:/home/nonroot/data ...
COPY --from=build --chown=65532:65532 /out/data /home/nonroot/data
WORKDIR /home/nonroot
# nonroot, by number: Kubernetes' runAsNonRoot can only check a numeric user.
USER 65532:65532

ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080

# No curl in distroless: the binary checks itself. `phone-verify healthcheck` exits 0 when
# GET http://127.0.0.1:<port of BIND_ADDR>/healthz answers 200, else 1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/phone-verify", "healthcheck"]

# SIGTERM (docker stop) makes it finish in-flight requests and exit 0.
ENTRYPOINT ["/usr/local/bin/phone-verify"]
