#!/usr/bin/env bash
# The soak test (not part of every CI run): builds the release server and runs
# bench/src/bin/soak.rs against it. Arguments go to the soak program, e.g.
#   scripts/soak.sh --rounds 2 --seconds 90 --connections 3000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p rookery -p rookery-bench --bin rookery --bin soak
exec "${CARGO_TARGET_DIR:-target}/release/soak" --server "${CARGO_TARGET_DIR:-target}/release/rookery" "$@"
