#!/usr/bin/env bash
# Packs the npm package on a fresh tree (`npm pack` runs its prepack build), installs the
# tarball into a scratch project as an app would, checks the size budget, type-checks
# npm/test/types.ts (the README's example, `tsc --strict`) against the installed types, and
# runs npm/test/smoke.mjs in Node against a real Rookery.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p rookery --bin rookery
( cd npm && npm pack --silent >/dev/null )
tarball=$(ls -t npm/rookery-*.tgz | head -1)
scratch=$(mktemp -d)
( cd "$scratch" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent "$OLDPWD/$tarball" )
web="$scratch/node_modules/rookery/web"
size=$( (gzip -9c "$web/rookery_client_bg.wasm"; gzip -9c "$web/rookery_client.js") | wc -c )
echo "packed package: wasm + JS glue gzipped = $size bytes (budget 40960)"
if [ "$size" -gt 40960 ]; then echo "the package is over its size budget" >&2; exit 1; fi
cp npm/test/types.ts "$scratch/"
( cd "$scratch" && npm install --no-audit --no-fund --silent typescript@5.9.3 \
  && npx tsc --strict --noEmit --target es2022 --module esnext --moduleResolution bundler \
       --lib es2022,esnext.disposable,dom types.ts )
# No `any` in the public API (wasm-bindgen's low-level `InitOutput`, the raw wasm exports,
# is not API).
for types in "$scratch"/node_modules/rookery/{web,bundler}/rookery_client.d.ts; do
  if sed '/^export interface InitOutput/,$d' "$types" | grep -nw any; then
    echo "public types in $types use any" >&2; exit 1
  fi
done
echo "types of the packed package: tsc --strict ok, no any"
log=$(mktemp)
data=$(mktemp -d)
"${CARGO_TARGET_DIR:-target}/release/rookery" --listen 127.0.0.1:0 --data-dir "$data" >"$log" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$log")
[ -n "$addr" ] || { echo "rookery did not start:" >&2; cat "$log" >&2; exit 1; }
ROOKERY_URL="ws://$addr" node --experimental-websocket npm/test/smoke.mjs "$scratch"
