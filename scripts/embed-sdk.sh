#!/usr/bin/env bash
# Regenerates the SDK's `web` build that the server binary embeds for its demo page
# (server/assets/sdk/: rookery_client.js and rookery_client_bg.wasm), and records a hash of
# the sources it was built from (server/assets/sdk/SOURCES.sha256). The build is committed
# so that a plain `cargo build` (which cannot run wasm-pack) builds the whole binary.
#
#   scripts/embed-sdk.sh          rebuild with wasm-pack + wasm-opt (npm/build.sh's recipe)
#   scripts/embed-sdk.sh --check  fail when the committed build is older than its sources
#                                 (part of scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=server/assets/sdk

# Everything the web build is made from: the SDK crate, the protocol crate it uses, the
# size profile, and this recipe. (Cargo.lock is left out: a dependency bump elsewhere in
# the workspace should not mark the demo stale; rebuild by hand after bumping wasm-bindgen.)
sources_hash() {
  {
    find client-wasm/src client-wasm/Cargo.toml protocol/src protocol/Cargo.toml -type f \
      | LC_ALL=C sort | xargs sha256sum
    sed -n '/^\[profile.wasm-release\]/,/^$/p' Cargo.toml | sha256sum
    sha256sum scripts/embed-sdk.sh
  } | sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--check" ]; then
  want=$(sources_hash)
  have=$(cat "$out/SOURCES.sha256" 2>/dev/null || echo none)
  if [ "$want" != "$have" ]; then
    echo "server/assets/sdk is stale: client-wasm/ or protocol/ changed since it was built." >&2
    echo "Run scripts/embed-sdk.sh and commit server/assets/sdk/." >&2
    exit 1
  fi
  for f in rookery_client.js rookery_client_bg.wasm; do
    [ -s "$out/$f" ] || { echo "$out/$f is missing: run scripts/embed-sdk.sh" >&2; exit 1; }
  done
  echo "server/assets/sdk matches its sources ($want)"
  exit 0
fi

# wasm-opt from the pinned npm binaryen (never Debian's: it emits broken modules).
( cd npm && [ -x node_modules/.bin/wasm-opt ] || npm install --no-audit --no-fund --silent )
export PATH="$PWD/npm/node_modules/.bin:$PATH"
command -v wasm-pack >/dev/null || cargo install wasm-pack --version 0.15.1 --locked
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
wasm-pack build client-wasm --profile wasm-release --target web --mode no-install \
  --out-dir "$build" --out-name rookery_client
cp "$build/rookery_client.js" "$build/rookery_client_bg.wasm" "$out/"
sources_hash > "$out/SOURCES.sha256"
wasm=$(wc -c < "$out/rookery_client_bg.wasm")
js=$(wc -c < "$out/rookery_client.js")
gz=$( (gzip -9c "$out/rookery_client_bg.wasm"; gzip -9c "$out/rookery_client.js") | wc -c)
echo "embedded SDK: $wasm bytes of wasm, $js bytes of JS glue; $gz bytes gzipped"
