#!/usr/bin/env bash
# A/B of two builds on the request path: CPU per operation (utime + stime of the three node
# processes, from /proc/PID/stat, before and after each run) of two loopback clusters of 3
# `ringctl serve` processes (N=3, R=2, W=2, durability sync) started side by side, cluster `a`
# from binary A and cluster `b` from binary B, each benchmarked by its own binary's
# `ringctl bench` (so client and nodes speak that build's protocol). Runs alternate between
# the clusters (which goes first alternates too), ROUNDS times each, so both see the same
# machine; the report gives each run, the median per build and the median of each round's
# B/A ratio, with p50/p99/p999 latency.
# Usage (from the repository root): bash benches/scripts/ab_cpu.sh A_BINARY B_BINARY [SECONDS] [ROUNDS] [CONCURRENCY]
# Starts its processes on free loopback ports in a temporary directory and stops every one of
# them by pid at the end, on error and on Ctrl-C. Every run is bounded (SECONDS).
set -euo pipefail
source "$(dirname "$0")/common.sh"
declare -A BIN=([a]=$(realpath "$1") [b]=$(realpath "$2"))
SECS=${3:-10}
ROUNDS=${4:-3}
CONC=${5:-50}
KEYS=10000
RINGCTL=${BIN[a]} bench_init

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A = ${BIN[a]}, B = ${BIN[b]}"
echo "${SECS}s runs, $ROUNDS rounds, $CONC clients, $KEYS keys, 100 B values"

declare -A ADDR PID
# Each cluster's nodes run its own binary.
R=${BIN[a]} start_nodes a-n1 a-n2 a-n3 --
R=${BIN[b]} start_nodes b-n1 b-n2 b-n3 --
at() { local c=$1; shift; "${BIN[$c]}" --node "${ADDR[$c-n1]}" --certs "$DIR/certs" "$@"; }
R=${BIN[a]} until_true 60 all_up "${ADDR[a-n1]}" 3
R=${BIN[b]} until_true 60 all_up "${ADDR[b-n1]}" 3
for c in a b; do at $c bench --duration 2s --concurrency "$CONC" --keys $KEYS --read-ratio 0 >/dev/null 2>&1; done

# run C RATIO: one bench through C-n1; prints "ops cpu_us errors p50 p99 p999" (latency in µs).
run() {
  local c=$1 ratio=$2 pids=("${PID[$1-n1]}" "${PID[$1-n2]}" "${PID[$1-n3]}")
  local before after
  before=$(cpu_sum "${pids[@]}")
  at "$c" -o json bench --duration "${SECS}s" --concurrency "$CONC" --keys $KEYS --value-size 100 \
    --read-ratio "$ratio" >"$DIR/bench.json"
  after=$(cpu_sum "${pids[@]}")
  python3 -c "
import json; d=json.load(open('$DIR/bench.json')); s=d['reads'] if $ratio else d['writes']
print(d['ops'], $after - $before, d['errors'], s['p50_us'], s['p99_us'], s['p999_us'])"
}
for round in $(seq "$ROUNDS"); do
  for op in SET GET; do
    ratio=0; [ $op = GET ] && ratio=1
    order=(a b); [ $((round % 2)) = 0 ] && order=(b a)
    for c in "${order[@]}"; do
      echo "$op $c $(run $c $ratio)" >>"$DIR/rows"
    done
  done
done

python3 - "$DIR/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print()
print("| op | build | CPU µs/op summed over 3 nodes, each run | median | ops per run | p50 / p99 / p999 ms (run of median p999) | errors |")
print("|---|---|---|---|---|---|---|")
for op in ("SET", "GET"):
    for c in ("a", "b"):
        runs = [r for r in rows if r[0] == op and r[1] == c]
        per = [float(r[3]) / max(int(r[2]), 1) for r in runs]
        lat = sorted(runs, key=lambda r: int(r[7]))[len(runs) // 2]
        print(f"| {op} | {c.upper()} | {' / '.join(f'{x:.0f}' for x in per)} | {statistics.median(per):.0f} | "
              f"{' / '.join(r[2] for r in runs)} | {int(lat[5])/1000:.1f} / {int(lat[6])/1000:.1f} / {int(lat[7])/1000:.1f} | "
              f"{sum(int(r[4]) for r in runs)} |")
print()
for op in ("SET", "GET"):
    a = [float(r[3]) / max(int(r[2]), 1) for r in rows if r[0] == op and r[1] == "a"]
    b = [float(r[3]) / max(int(r[2]), 1) for r in rows if r[0] == op and r[1] == "b"]
    paired = sorted(y / x for x, y in zip(a, b))
    print(f"{op}: B / A CPU per op, per round: {' '.join(f'{r:.2f}' for r in paired)}; "
          f"median {statistics.median(paired):.3f} ({100 * (statistics.median(paired) - 1):+.1f}%)")
PY
