#!/usr/bin/env bash
# The pages the binary serves, in headless Chromium (Playwright + the system Chromium):
# the demo at /demo in two tabs, and the web console at /console against rooms made by real
# WebSocket clients (tests/browser/console.test.mjs). Screenshots at desktop (1280x800) and
# phone (390x844) widths go to target/screenshots/ (docs/CONSOLE.md shows a committed set).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
( cd tests/browser && [ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent )
cargo build --release -p rookery --bin rookery
target_dir="${CARGO_TARGET_DIR:-target}"
shots="$target_dir/screenshots"
key="console-test-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
slog=$(mktemp)
"$target_dir/release/rookery" --listen 127.0.0.1:0 --store memory --admin-key "$key" >"$slog" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$slog"' EXIT
for _ in $(seq 200); do grep -q listening "$slog" && break; sleep 0.1; done
addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$slog")
[ -n "$addr" ] || { echo "rookery did not start:" >&2; cat "$slog" >&2; exit 1; }
node --experimental-websocket tests/browser/console.test.mjs "http://$addr" "$key" "$shots"
