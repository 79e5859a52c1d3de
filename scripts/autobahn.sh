#!/usr/bin/env bash
# RFC 6455 conformance with the Autobahn|Testsuite (`wstest -m fuzzingclient`): starts the
# release server with its echo endpoint (`--echo-path`, the production connection path) and
# runs every case but permessage-deflate's (12.*, 13.*: not offered by the server), once per
# variant: the default driver (io_uring where the kernel allows it) on one core, epoll on
# one core, and two cores (connections spread over both by SO_REUSEPORT).
#
# usage: scripts/autobahn.sh [VARIANT...]   variants: default epoll cores2 (default: all three)
# env:   AUTOBAHN_TOOL   the suite's runner (default: ../shared/tools/autobahn/run.sh from the
#                        repository root); when it does not exist, the run is skipped (exit 0)
#        AUTOBAHN_CASES  case patterns (default "*"), AUTOBAHN_EXCLUDE (default "12.*,13.*")
#        AUTOBAHN_REPORTS where the reports go (default target/autobahn/<variant>)
#
# Fails (exit 1) when any case's behaviour is not OK, NON-STRICT or INFORMATIONAL, when any
# close is not OK (INFORMATIONAL only where the case itself is INFORMATIONAL), when a case has
# no result, or when the server died or logged a panic.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tool="${AUTOBAHN_TOOL:-$root/../shared/tools/autobahn/run.sh}"
if [ ! -e "$tool" ]; then
  cat <<EOF
autobahn: the Autobahn|Testsuite runner was not found at $tool.
  To run the suite, set AUTOBAHN_TOOL to a runner with the interface
  'run.sh URL CASES EXCLUDE' that writes reports/servers/index.json under \$AUTOBAHN_OUT:
  the project's shared tools provide one (tools/autobahn/run.sh), which installs
  autobahntestsuite 25.10.1 from PyPI into a Python 3.8-3.12 venv, converts it to Python 3
  and patches it (see its README.md).
autobahn: skipped
EOF
  exit 0
fi

if [ ! -x "$tool" ]; then
  echo "autobahn: $tool exists but is not executable" >&2
  exit 2
fi

variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(default epoll cores2)
for v in "${variants[@]}"; do
  case "$v" in
    default | epoll | cores2) ;;
    *) echo "autobahn: unknown variant '$v' (default, epoll, cores2)" >&2; exit 2 ;;
  esac
done

cargo build --release --locked -p rookery --bin rookery
bin="${CARGO_TARGET_DIR:-target}/release/rookery"
reports="${AUTOBAHN_REPORTS:-${CARGO_TARGET_DIR:-target}/autobahn}"
py="${AUTOBAHN_PYTHON:-python3}"

server=""
slog=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The checks of one variant's report; prints the summary line, exits non-zero on a failure.
check_report() {
  "$py" - "$1" "$2" <<'PYEOF'
import json, sys
index, variant = sys.argv[1], sys.argv[2]
results = next(iter(json.load(open(index)).values()))
counts, bad = {}, []
for case in sorted(results, key=lambda c: [int(x) for x in c.split(".")]):
    r = results[case]
    behavior, close = r["behavior"], r["behaviorClose"]
    counts[behavior] = counts.get(behavior, 0) + 1
    if behavior not in ("OK", "NON-STRICT", "INFORMATIONAL"):
        bad.append(f"{case}: {behavior}")
    elif close != "OK" and not (close == "INFORMATIONAL" and behavior == "INFORMATIONAL"):
        bad.append(f"{case}: close {close} (code {r.get('remoteCloseCode')})")
detail = {b: [c for c in results if results[c]["behavior"] == b] for b in ("NON-STRICT", "INFORMATIONAL")}
line = ", ".join(f"{n} {b}" for b, n in sorted(counts.items()))
print(f"autobahn [{variant}]: {len(results)} cases: {line}")
for b, cases in detail.items():
    if cases:
        print(f"  {b}: {' '.join(sorted(cases, key=lambda c: [int(x) for x in c.split('.')]))}")
for b in bad:
    print(f"  BAD {b}")
sys.exit(1 if bad else 0)
PYEOF
}

status=0
for v in "${variants[@]}"; do
  case "$v" in
    default) flags=(--cores 1) ;;
    epoll) flags=(--driver epoll --cores 1) ;;
    cores2) flags=(--cores 2) ;;
  esac
  out="$reports/$v"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  slog="$out/server.log"
  # The limits the suite needs: 16 MiB messages (9.1.6, 9.2.6), no message rate limit
  # (9.7/9.8 send 1,000 messages each as fast as they are echoed); the outbound bound is the
  # smallest the startup check allows for that message size.
  "$bin" --listen 127.0.0.1:0 --store memory --echo-path /echo \
    --max-message-size 16777216 --max-outbound-bytes 16777216 --max-message-rate 0 \
    --log-format text "${flags[@]}" >"$slog" 2>&1 &
  server=$!
  for _ in $(seq 100); do grep -q '^rookery listening' "$slog" && break; sleep 0.1; done
  addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$slog")
  if [ -z "$addr" ]; then
    echo "autobahn [$v]: rookery did not start:" >&2
    cat "$slog" >&2
    exit 1
  fi
  echo "autobahn [$v]: rookery ${flags[*]} on $addr ($(sed -n 's/^rookery listening on [^ ]* (\(.*\))$/\1/p' "$slog"))"
  rc=0
  AUTOBAHN_OUT="$out" AUTOBAHN_AGENT="rookery-$v" \
    "$tool" "ws://$addr/echo" "${AUTOBAHN_CASES:-*}" "${AUTOBAHN_EXCLUDE:-12.*,13.*}" \
    >"$out/tool.txt" 2>&1 || rc=$?
  if ! kill -0 "$server" 2>/dev/null; then
    echo "autobahn [$v]: the server died during the run; its log:" >&2
    tail -30 "$slog" >&2
    status=1
  elif grep -q 'panicked' "$slog"; then
    echo "autobahn [$v]: the server panicked:" >&2
    grep -A5 'panicked' "$slog" >&2
    status=1
  fi
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
  if [ ! -f "$out/reports/servers/index.json" ] || [ "$rc" -ge 2 ]; then
    echo "autobahn [$v]: the tool failed (exit $rc):" >&2
    cat "$out/tool.txt" >&2
    status=1
    continue
  fi
  if ! check_report "$out/reports/servers/index.json" "$v"; then
    status=1
  fi
  if [ "$rc" -ne 0 ]; then
    echo "autobahn [$v]: the tool reports a failure (exit $rc):" >&2
    cat "$out/tool.txt" >&2
    status=1
  fi
  echo "  report: $out/reports/servers/index.json"
done
exit "$status"
