#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, from the committed seed
# corpora. Installs cargo-fuzz if missing. The toolchain here is stable: RUSTC_BOOTSTRAP
# lets cargo-fuzz use the unstable flags it needs (sanitizer coverage, AddressSanitizer).
# A crash leaves its input in fuzz/artifacts/<target>/; make it a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
targets=$(cargo fuzz list)
for target in $targets; do
  echo "==> fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  # Work on a scratch copy so the committed seed corpus stays small.
  work=$(mktemp -d)
  cp -r "corpus/$target/." "$work/"
  cargo fuzz run "$target" "$work" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    2>&1 | grep -E "^(#[0-9]+ +DONE|Done|==|INFO: seed|SUMMARY)|panicked|ERROR" || true
  rm -rf "$work"
  if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "crash found in $target: see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "fuzzing: every target ran ${seconds}s without a crash"
