#!/usr/bin/env bash
# What the sequencer script costs Redis per event, alone: runs the `SEQUENCE` script of
# server/src/redis/scripts.rs (op `events`) with EVENTS chat-sized bodies per call (one
# argument, a line each, as nodes send them),
# eight calls pipelined from `redis-benchmark` (so Redis, not the round trip, is the limit), against a fresh `redis-server` on core 0
# (the benchmark on core 1), three times; prints calls/s and Redis's µs per event.
#
#   bench/redis-script.sh [EVENTS] [CALLS]      (defaults: 100 events, 1500 calls)
#   ROOMS=16 bench/redis-script.sh 1 3000       (SEQUENCE_ROOMS: 16 rooms' runs of 1 event
#                                               per call, as a turn of many small rooms)
#
# Used for the per-event figures in bench/RESULTS.md ("Sequencer calls that grow with
# load"). Needs redis-server, redis-cli and redis-benchmark (Debian: redis-server,
# redis-tools) and python3.
set -euo pipefail
events=${1:-100}
calls=${2:-1500}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >/dev/null &
redis=$!
trap 'kill $redis 2>/dev/null; wait $redis 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
rooms=${ROOMS:-0}
script=SEQUENCE
[ "$rooms" -gt 0 ] && script=SEQUENCE_ROOMS
python3 - "$root/server/src/redis/scripts.rs" "$script" >"$dir/sequence.lua" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
name = sys.argv[2]
# Each script is `concat!(room_history_lua!(), r#"…"#)`: the shared Lua, then its own.
shared = re.search(r'macro_rules! room_history_lua \{.*?r#"(.*?)"#', text, re.S).group(1)
own = re.search(r'pub const ' + name + r': &str = concat!\(\s*room_history_lua!\(\),\s*r#"(.*?)"#', text, re.S).group(1)
print(shared + own)
EOF
sha=$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$dir/sequence.lua")")
# A body as a node encodes a W2 chat event (128-byte message).
body='{"s":{"Topic":{"kind":"chat","id":null}},"t":1764683000000,"o":[1234567890123456789,12345],"e":{"Chat":{"id":"abcdefgh12345678","from":{"id":"u123456","name":"user-123456","roles":[]},"message":{"text":"'$(printf 'x%.0s' $(seq 128))'"},"at":1764683000000}}}'
bodies=$body
for _ in $(seq 2 "$events"); do bodies+=$'\n'"$body"; done
keys=('rk:{r}:epoch' 'rk:{r}:seq' 'rk:{r}:log' 'rk:{r}:state' 'rk:{r}:state' 'rk:{r}:polls')
call=(EVALSHA "$sha" 6 "${keys[@]}" 'rk:{r}' epoch1 1000 '' events "$events" "$bodies")
per_call=$events
if [ "$rooms" -gt 0 ]; then
    keys=() args=()
    for r in $(seq "$rooms"); do
        keys+=("rk:{r$r}:epoch" "rk:{r$r}:seq" "rk:{r$r}:log")
        args+=("rk:{r$r}" epoch1 "$events" "$bodies")
    done
    call=(EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" 1000 "${args[@]}")
    per_call=$((rooms * events))
fi
for run in 1 2 3; do
    rate=$(taskset -c 1 redis-benchmark -p "$port" -n "$calls" -c 1 -P 8 -q "${call[@]}" 2>&1 |
        tail -1 | grep -oE '[0-9.]+ requests per second' | cut -d' ' -f1)
    awk -v r="$rate" -v e="$per_call" -v run="$run" \
        'BEGIN { printf "run %d: %.0f calls/s of %d events: %.1f µs per event\n", run, r, e, 1e6 / (r * e) }'
done
