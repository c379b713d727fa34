#!/usr/bin/env bash
# Latency at half the maximum throughput, and memory with a million keys, of a loopback cluster
# of 3 real `ringctl serve` processes (N=3, R=2, W=2, --durability sync), release build:
#  1. closed-loop SET and GET runs (`ringctl bench`, CONCURRENCY clients through n1) give each
#     operation's maximum throughput here;
#  2. paced runs at half of it (`bench --rate`: requests due at even intervals, latency counted
#     from when each was due, so stalls are not hidden) give p50 / p99 / p999;
#  3. `bench --fill` writes KEYS keys (default 1,000,000) of 100 B; then each node's RSS
#     (VmRSS) idle, and its highest RSS sampled every 0.5 s during a mixed run over every key.
# CPU per operation (utime + stime of the three nodes, /proc/PID/stat) is printed beside each run.
# Usage (from the repository root): bash benches/scripts/latency_memory.sh [SECONDS] [CONCURRENCY] [KEYS]
#        (KEYS=0 skips the memory figures)
# Env: RINGCTL=path uses that binary instead of building one (release).
# Installs nothing. Starts its processes on free loopback ports in a temporary directory and
# stops every one of them by pid at the end, on error and on Ctrl-C. Every run is bounded:
# SECONDS each, and the fill by 30 minutes.
set -euo pipefail
source "$(dirname "$0")/common.sh"
SECS=${1:-20}
CONC=${2:-50}
KEYS=${3:-1000000}
bench_init
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "${SECS}s runs, $CONC clients, $KEYS keys for the memory figures, 100 B values, durability sync"

NODES=(n1 n2 n3)
declare -A ADDR PID
start_nodes "${NODES[@]}" -- --durability sync
at() { $R --node "${ADDR[n1]}" --certs "$DIR/certs" "$@"; }
until_true 30 all_up "${ADDR[n1]}" 3
NODE_PIDS=("${PID[n1]}" "${PID[n2]}" "${PID[n3]}")

# run LABEL BENCH_ARGS...: one bench through n1; a report row "label|json|cpu_us".
run() {
  local label=$1; shift
  local before after
  before=$(cpu_sum "${NODE_PIDS[@]}")
  at -o json bench --value-size 100 "$@" >"$DIR/bench.json"
  after=$(cpu_sum "${NODE_PIDS[@]}")
  echo "$label|$(tr -d '\n' <"$DIR/bench.json")|$(awk -v a="$after" -v b="$before" 'BEGIN {print a - b}')" >>"$DIR/rows"
}
throughput() { python3 -c "import json; print(int(json.load(open('$DIR/bench.json'))['throughput_ops_s']))"; }

at bench --duration 2s --concurrency "$CONC" --keys 10000 --read-ratio 0 >/dev/null 2>&1
for op in SET GET; do
  ratio=0; [ $op = GET ] && ratio=1
  run "$op closed loop, $CONC clients" --duration "${SECS}s" --concurrency "$CONC" --keys 10000 --read-ratio $ratio
  half=$(( $(throughput) / 2 ))
  [ "$half" -ge 1 ] || { echo "no throughput measured for $op" >&2; exit 1; }
  # Enough workers that a slow request does not hold back the next one due.
  run "$op paced at $half/s (half)" --duration "${SECS}s" --concurrency 256 --keys 10000 --read-ratio $ratio --rate "$half"
done

touch "$DIR/idle" "$DIR/peak"
if [ "$KEYS" -gt 0 ]; then
  # Memory: fill, settle, then a mixed run over every key while RSS is sampled.
  run "fill $KEYS keys" --duration 30m --concurrency "$CONC" --keys "$KEYS" --fill
  sleep 10
  for n in "${NODES[@]}"; do echo "$n|$(rss_mib "${PID[$n]}")" >>"$DIR/idle"; done
  python3 - "$DIR/peak" "${NODE_PIDS[@]}" <<'EOF' &
import sys, time
peak = {p: 0 for p in sys.argv[2:]}
while True:
    for p in peak:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS"):
                peak[p] = max(peak[p], int(line.split()[1]) // 1024)
    open(sys.argv[1], "w").write(" ".join(str(peak[p]) for p in sys.argv[2:]))
    time.sleep(0.5)
EOF
  SAMPLER=$!; PIDS+=($SAMPLER)
  run "mixed over $KEYS keys, $CONC clients" --duration "${SECS}s" --concurrency "$CONC" --keys "$KEYS" --read-ratio 0.5
  kill $SAMPLER 2>/dev/null || true
fi

python3 - "$DIR/rows" "$DIR/idle" "$DIR/peak" <<'EOF'
import json, sys
ms = lambda us: '-' if us is None else f"{us / 1000:.2f}"
print()
print("| run | ops | throughput (ops/s) | CPU µs/op summed over 3 nodes | p50 / p99 / p999 (ms) | max (ms) | errors |")
print("|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    label, raw, cpu = line.rstrip('\n').split('|')
    d = json.loads(raw)
    op = d['writes'] if d['writes']['ok'] + d['writes']['errors'] >= d['reads']['ok'] + d['reads']['errors'] else d['reads']
    pct = f"{ms(op['p50_us'])} / {ms(op['p99_us'])} / {ms(op['p999_us'])}"
    print(f"| {label} | {d['ops']:,} | {d['throughput_ops_s']:,.0f} | {float(cpu) / max(d['ops'], 1):.0f} | {pct} | {ms(op['max_us'])} | {d['errors']} |")
idle = [l.strip().split('|') for l in open(sys.argv[2])]
peak = open(sys.argv[3]).read().split()
if not idle:
    sys.exit()
print()
print("| node | RSS idle after the fill (MiB) | highest RSS during the mixed run (MiB) |")
print("|---|---|---|")
for (n, rss), p in zip(idle, peak):
    print(f"| {n} | {rss} | {p} |")
EOF
