# syntax=docker/dockerfile:1
# One image per Cloud Run function; the build argument FUNCTION chooses which:
#   docker build --build-arg FUNCTION=onboard -t convergence-onboard .
# FUNCTION is one of: bootstrap onboard integrations pricing pipelines-run scheduler-tick.
# `make images` assembles the same final layout from locally built binaries where no Docker engine
# runs (scripts/images.sh); tests/api/images.rs checks that the two agree.

# The workspace's toolchain. Bookworm, because the runtime below is Debian 12: the binary links the
# glibc it is built against.
FROM rust:1.95.0-slim-bookworm AS build
ARG FUNCTION
WORKDIR /src
COPY . .
# Cloud Run builds leave DuckDB out (no `duckdb` feature), as `make build-functions` does. The
# cache mounts keep crates and compiled dependencies between builds (BuildKit, buildah, podman).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    case "${FUNCTION}" in \
      bootstrap|onboard|integrations|pricing|pipelines-run|scheduler-tick) ;; \
      *) echo "FUNCTION must be one of bootstrap onboard integrations pricing pipelines-run scheduler-tick, not '${FUNCTION}'" >&2; exit 1 ;; \
    esac \
    && cargo build --release --locked -p "convergence-${FUNCTION}" \
    && install -D -m 0755 "target/release/convergence-${FUNCTION}" /out/convergence

# glibc, libgcc, CA certificates (/etc/ssl/certs/ca-certificates.crt, also named by SSL_CERT_FILE),
# /tmp and the user nonroot (65532, numeric below so that a runtime checking for a non-root user
# need not read /etc/passwd); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG FUNCTION
LABEL org.opencontainers.image.title="convergence-${FUNCTION}" \
      org.opencontainers.image.description="Convergence ${FUNCTION}: one Cloud Run service"
# The binaries read ./configs (or CONFIGS_DIR) at start-up and refuse to start without it.
WORKDIR /app
COPY configs/ /app/configs/
COPY --from=build /out/convergence /usr/local/bin/convergence
ENV PORT=8080 \
    CONFIGS_DIR=/app/configs
EXPOSE 8080
USER 65532:65532
# Cloud Run stops an instance with SIGTERM; the server drains in-flight requests on it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/convergence"]
