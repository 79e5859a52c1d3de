#!/bin/sh
# Builds the package's two flavours from ../client-wasm with wasm-pack: `web` (ES module,
# `await init()`) and `bundler` (for webpack, Vite, …). wasm-opt comes from the pinned npm
# `binaryen` (never Debian's, which emits broken modules).
set -eu
cd "$(dirname "$0")"
[ -x node_modules/.bin/wasm-opt ] || npm install --no-audit --no-fund --silent
export PATH="$PWD/node_modules/.bin:$PATH"
command -v wasm-pack >/dev/null || cargo install wasm-pack --version 0.15.1 --locked
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
for target in web bundler; do
  rm -rf "$target"
  wasm-pack build ../client-wasm --profile wasm-release --target "$target" --mode no-install \
    --out-dir "../npm/$target" --out-name rookery_client
  rm -f "$target/package.json" "$target/.gitignore" "$target/README.md" "$target/LICENSE"*
done
wasm=$(wc -c < web/rookery_client_bg.wasm)
gz=$( (gzip -9c web/rookery_client_bg.wasm; gzip -9c web/rookery_client.js) | wc -c)
echo "rookery: web build $wasm bytes of wasm; wasm + JS glue gzipped: $gz bytes"
