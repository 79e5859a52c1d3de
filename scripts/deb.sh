#!/usr/bin/env bash
# Builds the Debian package and prints its path (target/debian/rookery_VERSION-1_ARCH.deb):
# the binary, the systemd unit, /etc/rookery/rookery.toml, the docs and the Grafana
# dashboard; its postinst creates the `rookery` user and /var/lib/rookery (docs/DEPLOY.md).
# Installs cargo-deb first when it is missing. The release binary is built as usual (so an
# already built one is reused) and packaged stripped.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION" >&2
fi
cargo build --release --locked -p rookery --bin rookery >&2
cargo deb -p rookery --no-build --locked --strip --fast "$@"
