#!/usr/bin/env bash
# The demo page test: packs the npm package, installs it next to a copy of the demo page
# (as an app would), serves that on 127.0.0.1, starts a real Rookery, and drives the page in
# two headless Chromium tabs with Playwright (playwright-core + the system Chromium).
# With ROOKERY_URL=ws://HOST:PORT it drives a server already running there instead
# (scripts/deb-test.sh: the one installed from the package).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
( cd npm/demo && [ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent )
[ -n "${ROOKERY_URL:-}" ] || cargo build --release -p rookery --bin rookery
( cd npm && npm pack --silent >/dev/null )
tarball=$(ls -t npm/rookery-*.tgz | head -1)
site=$(mktemp -d)
cp npm/demo/index.html "$site/"
( cd "$site" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent "$OLDPWD/$tarball" )
slog=$(mktemp); wlog=$(mktemp)
data=$(mktemp -d)
server=""
if [ -z "${ROOKERY_URL:-}" ]; then
  "${CARGO_TARGET_DIR:-target}/release/rookery" --listen 127.0.0.1:0 --data-dir "$data" >"$slog" 2>/dev/null &
  server=$!
else
  echo "rookery listening on ${ROOKERY_URL#ws://} (already running)" >"$slog"
fi
node npm/demo/serve.mjs "$site" >"$wlog" &
web=$!
trap 'kill $server $web 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q listening "$slog" && grep -q serving "$wlog" && break; sleep 0.1; done
addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$slog")
[ -n "$addr" ] || { echo "rookery did not start:" >&2; cat "$slog" >&2; exit 1; }
page=$(sed -n 's/^serving on \(.*\)$/\1/p' "$wlog")
node npm/demo/demo.test.mjs "$page" "ws://$addr"
