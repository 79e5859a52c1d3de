#!/usr/bin/env bash
# The demo and the console in headless Firefox (tests/browser/firefox.test.mjs), driven over
# W3C WebDriver by geckodriver: Playwright drives only its own patched Firefox builds, and
# its WebDriver BiDi mode needs commands Debian's Firefox ESR lacks. Installs Debian's
# firefox-esr and geckodriver (pinned, from crates.io) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v firefox-esr >/dev/null && ! command -v firefox >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq firefox-esr >/dev/null
fi
command -v geckodriver >/dev/null || cargo install geckodriver --version 0.37.1 --locked
cargo build --release -p rookery --bin rookery
target_dir="${CARGO_TARGET_DIR:-target}"
key="firefox-test-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
slog=$(mktemp); glog=$(mktemp)
"$target_dir/release/rookery" --listen 127.0.0.1:0 --store memory --admin-key "$key" >"$slog" 2>/dev/null &
server=$!
geckodriver --port 0 --websocket-port 0 >"$glog" 2>&1 &
gecko=$!
trap 'kill $server $gecko 2>/dev/null || true; rm -f "$slog" "$glog"' EXIT
for _ in $(seq 200); do grep -q listening "$slog" && grep -q "Listening on" "$glog" && break; sleep 0.1; done
addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$slog")
driver=$(sed -n 's/.*Listening on \([0-9.:]*\).*/\1/p' "$glog" | head -1)
[ -n "$addr" ] || { echo "rookery did not start:" >&2; cat "$slog" >&2; exit 1; }
[ -n "$driver" ] || { echo "geckodriver did not start:" >&2; cat "$glog" >&2; exit 1; }
node --experimental-websocket tests/browser/firefox.test.mjs "http://$addr" "$key" "http://$driver" "$target_dir/screenshots"
