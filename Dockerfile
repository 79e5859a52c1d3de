# Rookery in a container: `docker build -t rookery .`, then see docs/DEPLOY.md#containers
# (io_uring needs a seccomp profile that allows it; without one Rookery runs on epoll).
#
# Stage 1 builds the release binary; stage 2 is a small runtime image (distroless, glibc,
# no shell) that runs it as a non-root user with the packaged config.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rookery --bin rookery \
 && strip target/release/rookery \
 && mkdir -p /out/var/lib/rookery

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/rookery /usr/bin/rookery
COPY deploy/rookery.toml /etc/rookery/rookery.toml
# The data directory (the disk store), owned by the image's non-root user (65532).
COPY --from=build --chown=65532:65532 /out/var/lib/rookery /var/lib/rookery
VOLUME /var/lib/rookery
WORKDIR /var/lib/rookery
# Containers log JSON for the log driver (a variable beats the file). `docker stop` sends
# SIGKILL 10 s after SIGTERM by default: the drain must end before, so it gets 8 s here.
ENV ROOKERY_LOG_FORMAT=json \
    ROOKERY_SHUTDOWN_TIMEOUT_MS=8000
USER 65532:65532
EXPOSE 8080
# SIGTERM drains: clients are closed with 1001 within shutdown_jitter_ms (2 s) and the
# process exits within shutdown_timeout_ms (8 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/rookery", "--config", "/etc/rookery/rookery.toml"]
