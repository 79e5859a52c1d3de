#!/usr/bin/env bash
# The SDK's browser tests: installs what they need (the wasm32 target, wasm-pack,
# wasm-bindgen-cli of the crate's exact version, Chromium and chromedriver), starts a real
# Rookery on 127.0.0.1, and runs `wasm-pack test --headless --chrome` against it: once over
# ws://, once over wss:// (a Rookery with --tls-cert/--tls-key and a certificate made here,
# which Chromium is told to trust by its public key's hash, for this run only).
set -euo pipefail
cd "$(dirname "$0")/.."

BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' client-wasm/Cargo.toml)
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
if ! command -v wasm-pack >/dev/null; then cargo install wasm-pack --version 0.15.1 --locked; fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
  # Not --locked: its lockfile pins a crate version this registry does not serve.
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION"
fi
if ! command -v chromedriver >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo build --release -p rookery --bin rookery
log=$(mktemp)
# A data directory of its own (the default, ./rookery-data, must not land in the repo), for a
# server that has one.
store=()
data=""
if "${CARGO_TARGET_DIR:-target}/release/rookery" --help 2>/dev/null | grep -q -- '--data-dir'; then
  data=$(mktemp -d)
  store=(--data-dir "$data")
fi
# The JWT secret signs the short-lived tokens of the getToken tests (client-wasm/tests/browser.rs).
"${CARGO_TARGET_DIR:-target}/release/rookery" --listen 127.0.0.1:0 --max-message-size 4096 --ping-interval-ms 2000 \
  --jwt-secret sdk-test-secret --token-grace-ms 3000 \
  "${store[@]}" >"$log" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; [ -z "$data" ] || rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$log")
[ -n "$addr" ] || { echo "rookery did not start:" >&2; cat "$log" >&2; exit 1; }
echo "rookery for the SDK tests at $addr"
ROOKERY_TEST_URL="ws://$addr" wasm-pack test --headless --chrome --mode no-install client-wasm
kill $server 2>/dev/null || true

# The same tests over TLS.
command -v openssl >/dev/null || apt-get install -y -qq openssl >/dev/null
tls=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; [ -z "$data" ] || rm -rf "$data"; rm -rf "$tls"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null
spki=$(openssl x509 -in "$tls/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)
# The crate's webdriver.json, plus the one certificate Chromium is to trust.
sed "s|\"--headless=new\",|\"--headless=new\",\n      \"--ignore-certificate-errors-spki-list=$spki\",|" \
  client-wasm/webdriver.json >"$tls/webdriver.json"
log=$(mktemp)
if [ -n "$data" ]; then rm -rf "$data" && data=$(mktemp -d) && store=(--data-dir "$data"); fi
"${CARGO_TARGET_DIR:-target}/release/rookery" --listen 127.0.0.1:0 --max-message-size 4096 --ping-interval-ms 2000 \
  --tls-cert "$tls/cert.pem" --tls-key "$tls/key.pem" "${store[@]}" >"$log" 2>/dev/null &
server=$!
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$log")
[ -n "$addr" ] || { echo "rookery (TLS) did not start:" >&2; cat "$log" >&2; exit 1; }
echo "rookery (TLS) for the SDK tests at $addr"
WASM_BINDGEN_TEST_WEBDRIVER_JSON="$tls/webdriver.json" ROOKERY_TEST_URL="wss://$addr" \
  wasm-pack test --headless --chrome --mode no-install client-wasm
