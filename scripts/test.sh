#!/usr/bin/env bash
# Runs every check and test of the project on a fresh machine: formatting, lints, the
# engine's unit tests, the integration tests against the real server on 127.0.0.1, and the
# Autobahn|Testsuite against its echo endpoint (skipped when the suite's runner is absent).
# It installs what it needs first: the rustfmt and clippy components here, for the SDK's
# browser tests the wasm32 target, wasm-pack, wasm-bindgen-cli and Chromium
# (scripts/sdk-test.sh), Firefox ESR and geckodriver for the console's Firefox test
# (scripts/firefox-test.sh), for the package test cargo-deb, systemd-analyze and promtool
# (scripts/deploy-test.sh), and redis-server (with redis-cli) for the tests of `--engine redis`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "redis-server and redis-cli (the tests of --engine redis start their own, on loopback ports; the Cluster suite creates its Cluster with redis-cli)"
# redis-cli (Debian's redis-tools) also checks what the nodes wrote; Debian's redis-server
# is built with TLS (the rediss:// tests need --tls-port).
{ command -v redis-server && command -v redis-cli; } >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
}
redis-server --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the SDK build embedded for /demo matches its sources (scripts/embed-sdk.sh --check)"
./scripts/embed-sdk.sh --check

step "cargo test (unit and integration)"
cargo test --workspace --locked

step "Autobahn|Testsuite: RFC 6455 conformance through the echo endpoint (3 variants)"
./scripts/autobahn.sh

step "SDK browser tests (headless Chromium against a real server)"
./scripts/sdk-test.sh

step "npm package: pack, install, size, smoke test in Node against a real server"
./scripts/npm-smoke.sh

step "demo page: two headless Chromium pages against a real server (Playwright)"
./scripts/demo-test.sh

step "pages served by the binary: the demo in two tabs, the web console (Playwright, screenshots)"
./scripts/console-test.sh

step "the same pages in headless Firefox (geckodriver)"
./scripts/firefox-test.sh

step "Debian package: build, dpkg -i, the installed unit and server (systemd-analyze, promtool, the demo page), purge"
./scripts/deploy-test.sh
