#!/usr/bin/env bash
# Interleaved A/B comparison of two `rookery` server binaries with the project's own
# benchmark, `rookery-bench run --quick --systems rookery`: ROUNDS runs per binary in the
# order A B A B ... (AB_ORDER=abba: A B B A ...), then each figure per round and its
# median (min–max) for A and B: W1 bytes per idle connection, W2 best deliveries/s and
# server CPU ns per delivery, W3 best deliveries/s and CPU ns per delivery.
#
#   bench/ab.sh A_BIN B_BIN [ROUNDS]        # ROUNDS defaults to 3; ~25 s per quick run
#
# Environment:
#   BENCH=path          load generator for both sides (default: rookery-bench next to A_BIN)
#   AB_DIR=dir          scratch directory (default: a new /tmp/rookery-ab.XXXXXX; kept)
#   AB_MODE=full        `run --runs 1` instead of `--quick`: W2 at N = 10 k, W1 at 19 k,
#                       W3 with 10 k subscribers, 2 s steps (the RESULTS.md figures; slower)
#   AB_QUIET=0.2        before each run, wait until the rest of the machine uses less than
#                       this many cores (measured over 2 s) ...
#   AB_QUIET_WAIT=60    ... for at most this many seconds (0: do not wait), then run anyway
#   AB_WORKLOADS=w1,w2,w3,w4  the workloads run (`--workloads`; the table reads W1, W2, W3);
#                       W5 (durable writes) is left out unless named here
#   AB_ORDER=abba       A B, B A, A B, ... instead of A B, A B, ...: anything that favours
#                       the first or second run of a round then weighs on both sides
#   AB_NICE=-20         niceness of the bench, its servers and workers (default -20 as root,
#                       else 0), so that other work on the machine yields the two cores; the
#                       bench runs in its own session, and with the kernel's autogroups on
#                       (/proc/sys/kernel/sched_autogroup_enabled) that session's group gets
#                       the same niceness, else nice would weigh only within the group
#
# Both binaries are copied into the scratch directory first (a rebuild during the run
# cannot swap them), each as `rookery` in its own directory handed to `--bin-dir`; the
# report goes there too (`--out`), so bench/RESULTS.md is never written, and the bench runs
# from there. ROUNDS=1 is a smoke test, not a comparison. The `other` column is the CPU the
# rest of the machine used during each run, in cores (machine busy time from /proc/stat
# minus the bench's own processes; interrupt work of the bench's own traffic can land
# there too): runs with a high value ran beside other work, e.g. a compiler. Judge B by
# A's own spread: run A against A once to see it on this machine.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
[[ $# -ge 2 && $# -le 3 ]] || usage
a_bin=$1
b_bin=$2
rounds=${3:-3}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || usage
for f in "$a_bin" "$b_bin"; do
    [[ -x $f && -f $f ]] || { echo "not an executable file: $f" >&2; exit 2; }
done
bench=${BENCH:-$(dirname "$a_bin")/rookery-bench}
[[ -x $bench && -f $bench ]] || { echo "no load generator at $bench (set BENCH)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "taskset is needed (util-linux)" >&2; exit 2; }
cpus=$(nproc)
if ((cpus < 2)); then
    echo "the bench pins the server to core 0 and the load to core 1: needs 2 cores" >&2
    exit 2
fi
case ${AB_MODE:-quick} in
    quick) mode_args=(--quick) ;;
    full) mode_args=(--runs 1) ;;
    *) echo "AB_MODE is quick or full" >&2; exit 2 ;;
esac
# A load generator from before `--workloads` runs every workload it has (W1 to W4).
workload_args=()
if "$bench" run --help 2>/dev/null | grep -q -- '--workloads'; then
    workload_args=(--workloads "${AB_WORKLOADS:-w1,w2,w3,w4}")
fi
case ${AB_ORDER:=abab} in
    abab | abba) ;;
    *) echo "AB_ORDER is abab or abba" >&2; exit 2 ;;
esac
quiet=${AB_QUIET:-0.2}
quiet_wait=${AB_QUIET_WAIT:-60}
hz=$(getconf CLK_TCK)
if [[ -n ${AB_NICE:-} ]]; then nice_level=$AB_NICE; elif ((EUID == 0)); then nice_level=-20; else nice_level=0; fi

# The environment must configure neither side (the bench itself sets only ROOKERY_LOG).
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^ROOKERY_' || true)

# One A/B at a time on this machine: two would share cores 0 and 1.
exec 9>/tmp/rookery-ab.lock
if ! flock -n 9; then
    echo "another bench/ab.sh is running: waiting for it" >&2
    flock 9
fi

dir=${AB_DIR:-$(mktemp -d /tmp/rookery-ab.XXXXXX)}
mkdir -p "$dir/A" "$dir/B"
a_bin=$(realpath "$a_bin") b_bin=$(realpath "$b_bin") bench=$(realpath "$bench") dir=$(realpath "$dir")
cd "$dir" # everything runs here: nothing relative lands in the repository
cp "$a_bin" "$dir/A/rookery"
cp "$b_bin" "$dir/B/rookery"
cp "$bench" "$dir/rookery-bench"
{
    echo "A     $a_bin  sha256 $(sha256sum "$dir/A/rookery" | cut -c1-16)"
    echo "B     $b_bin  sha256 $(sha256sum "$dir/B/rookery" | cut -c1-16)"
    echo "bench $bench  sha256 $(sha256sum "$dir/rookery-bench" | cut -c1-16)"
    echo "nice $nice_level, mode ${AB_MODE:-quick}, order $AB_ORDER, $rounds round(s)"
} | tee "$dir/binaries.txt" >&2

# Busy and total CPU ticks of the whole machine so far (/proc/stat; iowait counts as idle).
ticks() { awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit }' /proc/stat; }
# Sets `own` to the CPU seconds used by this shell's finished children (and theirs), from
# `times` (not in a command substitution: that would be a new process's own count).
children_cpu() {
    times >"$dir/.times"
    own=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }; print s }' "$dir/.times")
}
# Waits until the machine has been quiet for 2 s (fewer than $quiet cores busy), at most
# $quiet_wait seconds; says so when it gives up.
wait_quiet() {
    local waited=0 b0 t0 b1 t1 load
    ((quiet_wait > 0)) || return 0
    while :; do
        read -r b0 t0 < <(ticks)
        sleep 2
        read -r b1 t1 < <(ticks)
        load=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v n="$cpus" 'BEGIN { printf "%.2f", (t > 0 ? n * b / t : 0) }')
        if awk -v l="$load" -v q="$quiet" 'BEGIN { exit !(l < q) }'; then return 0; fi
        if ((waited >= quiet_wait)); then
            echo "    machine still busy (${load} cores) after ${waited} s: running anyway" >&2
            return 0
        fi
        ((waited == 0)) && echo "    machine busy (${load} cores): waiting up to ${quiet_wait} s" >&2
        waited=$((waited + 2))
    done
}

# The rookery rows of the report's Markdown tables: the largest N of W2 and W1 (the only
# one in --quick) and W3, as numbers (the report writes 3.36 M, 12 k, 540, 97.89).
figures() { # report.md -> "w1_n w1 w2_n w2_rate w2_cpu w3_rate w3_cpu"
    awk -F'|' '
        function num(s,   a) {
            sub(/\(.*/, "", s); gsub(/^ +| +$/, "", s)
            split(s, a, " ")
            if (a[1] !~ /^[0-9.]+$/) return "NA"
            if (a[2] == "M") return a[1] * 1e6
            if (a[2] == "k") return a[1] * 1e3
            return a[1] + 0
        }
        function or_na(x) { return x == "" ? "NA" : x }
        /^## /           { sec = "" }
        /^## W2 fanout/  { sec = "w2" }
        /^## W1 idle/    { sec = "w1" }
        /^## W3 many/    { sec = "w3" }
        $2 ~ /^ *rookery *$/ {
            if (sec == "w2") { w2n = $3 + 0; w2r = num($4); w2c = num($6) }
            if (sec == "w1") { w1n = $3 + 0; w1 = num($4) }
            if (sec == "w3") { w3r = num($3); w3c = num($5) }
        }
        END {
            print or_na(w1n), or_na(w1), or_na(w2n), or_na(w2r), or_na(w2c), or_na(w3r), or_na(w3c)
        }' "$1"
}

tsv=$dir/figures.tsv
printf 'side\tround\tw1_n\tw1_B_per_conn\tw2_n\tw2_deliveries_s\tw2_cpu_ns\tw3_deliveries_s\tw3_cpu_ns\tother_cores\tseconds\n' >"$tsv"
started=$SECONDS
for ((r = 1; r <= rounds; r++)); do
    sides="A B"
    [[ $AB_ORDER == abba && $((r % 2)) == 0 ]] && sides="B A"
    for side in $sides; do
        report=$dir/$side-$r.md
        log=$dir/$side-$r.log
        echo "[$(date -u +%H:%M:%S)] round $r/$rounds $side" >&2
        wait_quiet
        read -r busy0 total0 < <(ticks)
        children_cpu
        own0=$own
        wall0=$EPOCHREALTIME
        # In a session of its own (its process group is the session's: interrupted, the
        # script ends the bench and the servers and workers it started).
        setsid --wait bash -c 'n=$1; shift
            [[ $n == 0 ]] || echo "$n" >/proc/self/autogroup 2>/dev/null || true
            exec nice -n "$n" "$@"' _ "$nice_level" "$dir/rookery-bench" run "${mode_args[@]}" "${workload_args[@]}" \
            --systems rookery --bin-dir "$dir/$side" --out "$report" >/dev/null 2>"$log" &
        bench_pid=$!
        trap 'kill -KILL -- -"$bench_pid" 2>/dev/null; exit 130' INT TERM
        if ! wait "$bench_pid"; then
            echo "round $r $side: rookery-bench failed; see $log" >&2
            tail -5 "$log" >&2
            exit 1
        fi
        trap - INT TERM
        wall1=$EPOCHREALTIME
        children_cpu
        own1=$own
        read -r busy1 total1 < <(ticks)
        read -r other secs < <(awk -v b=$((busy1 - busy0)) -v hz="$hz" -v o0="$own0" -v o1="$own1" \
            -v w0="$wall0" -v w1="$wall1" 'BEGIN {
                o = b / hz - (o1 - o0); if (o < 0) o = 0
                printf "%.2f %.0f\n", o / (w1 - w0), w1 - w0 }')
        read -r w1n w1 w2n w2r w2c w3r w3c < <(figures "$report")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$side" "$r" "$w1n" "$w1" "$w2n" \
            "$w2r" "$w2c" "$w3r" "$w3c" "$other" "$secs" >>"$tsv"
        echo "    W1 $w1 B/conn  W2 $w2r/s $w2c ns  W3 $w3r/s $w3c ns  other ${other} cores  ${secs} s" >&2
    done
done

# The table: one row per figure; per-round values, median (min–max) for A and B, and B's
# median against A's.
awk -F'\t' -v rounds="$rounds" -v total="$((SECONDS - started))" -v mode="${AB_MODE:-quick}" -v order="$AB_ORDER" '
    NR == 1 { next }
    { for (c = 3; c <= 11; c++) v[$1, $2, c] = $c }
    function fmt(x, c) {
        if (x == "NA") return "NA"
        if (c == 6 || c == 8) return sprintf("%.2fM", x / 1e6)
        if (c == 10) return sprintf("%.2f", x)
        return sprintf("%.0f", x)
    }
    function stats(side, c,   n, a, i, j, t) {
        n = 0
        for (i = 1; i <= rounds; i++) if (v[side, i, c] != "NA") a[++n] = v[side, i, c] + 0
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        if (n == 0) { med = "NA"; lo = "NA"; hi = "NA"; return }
        med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        lo = a[1]; hi = a[n]
    }
    END {
        name[4] = "W1 B/conn (N=" v["A", 1, 3] ")"
        name[6] = "W2 deliveries/s (N=" v["A", 1, 5] ")"
        name[7] = "W2 CPU ns/delivery"
        name[8] = "W3 deliveries/s"
        name[9] = "W3 CPU ns/delivery"
        name[10] = "other load (cores)"
        split("4 6 7 8 9 10", cols, " ")
        hdr = sprintf("%-24s", "figure")
        for (s = 1; s <= 2; s++) {
            side = (s == 1) ? "A" : "B"
            for (i = 1; i <= rounds; i++) hdr = hdr sprintf(" %7s", side i)
            hdr = hdr sprintf("  %-21s", side " median (min-max)")
        }
        print hdr sprintf(" %7s  %s", "B vs A", "B median in A range")
        for (k = 1; k <= 6; k++) {
            c = cols[k]
            line = sprintf("%-24s", name[c])
            for (s = 1; s <= 2; s++) {
                side = (s == 1) ? "A" : "B"
                for (i = 1; i <= rounds; i++) line = line sprintf(" %7s", fmt(v[side, i, c], c))
                stats(side, c)
                m[side] = med; mlo[side] = lo; mhi[side] = hi
                line = line sprintf("  %-21s", fmt(med, c) " (" fmt(lo, c) "-" fmt(hi, c) ")")
            }
            d = ""; within = ""
            if (c != 10 && m["A"] != "NA" && m["B"] != "NA" && m["A"] != 0) {
                d = sprintf("%+.1f%%", 100 * (m["B"] / m["A"] - 1))
                within = (m["B"] >= mlo["A"] && m["B"] <= mhi["A"]) ? "yes" : "no"
            }
            print line sprintf(" %7s  %s", d, within)
        }
        printf "\n%s mode, %d round(s) per side, order %s; %d s in all. Lower is better for B/conn and ns/delivery.\n", mode, rounds, order, total
    }' "$tsv" | tee "$dir/table.txt"
echo "reports, logs and figures.tsv in $dir" >&2
