#!/usr/bin/env bash
# Runs the whole test command (scripts/test.sh) RUNS times in a row while LOADERS busy loops
# compete with it for every core, and stops at the first failure. It shows that no test
# depends on the machine being idle (CI and other people run the tests while other work
# shares the cores). Not part of CI itself: it takes RUNS times the test command.
#
#   scripts/test-under-load.sh [RUNS] [LOADERS]     # defaults: 5 runs, 2 loops per core
#
# Each run's output goes to $LOG_DIR/run-K.log (default: a new /tmp/rookery-load.XXXXXX).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
loaders=${2:-$((2 * $(nproc)))}
log_dir=${LOG_DIR:-$(mktemp -d /tmp/rookery-load.XXXXXX)}
mkdir -p "$log_dir"

pids=()
stop_load() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_load EXIT
for _ in $(seq "$loaders"); do
    # Bounded: a loop left behind by a killed script ends by itself within 3 hours.
    timeout 10800 sh -c 'while :; do :; done' &
    pids+=("$!")
done
echo "load: $loaders busy loops on $(nproc) cores; logs in $log_dir"

for k in $(seq "$runs"); do
    start=$(date +%s)
    if ./scripts/test.sh >"$log_dir/run-$k.log" 2>&1; then
        result=passed
    else
        result=FAILED
    fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "run $k/$runs: $result in $(($(date +%s) - start)) s (load average $load)"
    if [[ $result == FAILED ]]; then
        echo "see $log_dir/run-$k.log" >&2
        exit 1
    fi
done
echo "$runs passed, 0 failed"
