#!/usr/bin/env bash
# Primary mode against quorum mode on a loopback cluster of 3 real `ringctl serve` processes
# (N=3, R=2, W=2, durability sync): write throughput and latency per sync mode, reads, the
# replicas' lag under asynchronous replication, and failover time after SIGKILL of a primary.
# Usage (from the repository root): bash benches/scripts/primary.sh [SECONDS] [CONCURRENCY] [FAILOVERS]
# Starts its own nodes on free ports in a temporary directory and kills them all at the end.
# NODE_LOG sets the nodes' RUST_LOG (default warn); KEEP_LOGS=DIR copies their logs there.
# TOPOLOGY=chain sets every primary prefix to `--topology chain` (default star).
set -euo pipefail
source "$(dirname "$0")/common.sh"
SECS=${1:-15}
CONC=${2:-32}
TRIALS=${3:-5}
TOPOLOGY=${TOPOLOGY:-star}
KEYS=10000
VALUE=100
cargo build --release -q -p ringctl
R=$PWD/target/release/ringctl
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$DIR"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
NODES=(n1 n2 n3)
$R certs init --dir "$DIR/certs" >/dev/null
declare -A ADDR PID
for n in "${NODES[@]}"; do
  $R certs issue --dir "$DIR/certs" --name $n --ip 127.0.0.1 >/dev/null
  ADDR[$n]=127.0.0.1:$(port)
done
# serve NAME [SEED_NAME]: start (or restart) a node, joining through n1 or SEED_NAME.
serve() {
  local seed=(); local via=${2:-n1}
  [ "$1" != "$via" ] && seed=(--seed "${ADDR[$via]}")
  RUST_LOG=${NODE_LOG:-warn} $R serve --name "$1" --listen "${ADDR[$1]}" --data "$DIR/$1" --certs "$DIR/certs" \
    --on-signal stop "${seed[@]}" >>"$DIR/$1.log" 2>&1 &
  PIDS+=($!); PID[$1]=$!
  disown $!  # killed on purpose: no job-control notice
}
# at NAME ARGS...: ringctl against node NAME.
at() { local n=$1; shift; $R --node "${ADDR[$n]}" --certs "$DIR/certs" "$@"; }
# json EXPR: evaluate a Python expression over the JSON document on stdin (as `d`).
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# all_online NAME KEY: NAME is the primary of KEY's shard and sees both replicas online.
all_online() {
  at "$1" -o json info replication --key "$2" | json "d[0]['role']=='primary' and len(d[0]['replicas'])==2 and all(r['state']=='online' for r in d[0]['replicas'])" | grep -q True
}
primary_of() { at "$1" -o json info replication --key "$2" | json "d[0]['primary'] or ''"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# bench LABEL PREFIX READ_RATIO: one closed-loop run through n1, as a table row.
bench() {
  local label=$1 prefix=$2 ratio=$3 l0 l1
  l0=$(load1)
  at n1 -o json bench --duration "${SECS}s" --concurrency "$CONC" --keys $KEYS --value-size $VALUE \
    --read-ratio "$ratio" --prefix "$prefix" >"$DIR/bench.json"
  l1=$(load1)
  LABEL="$label" LOAD="$l0 -> $l1" python3 - "$DIR/bench.json" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
op = d['writes'] if d['writes']['ok'] + d['writes']['errors'] else d['reads']
ms = lambda us: '-' if us is None else f"{us / 1000:.1f}"
err = f" (first: {d['first_error']})" if d['errors'] else ""
print(f"| {os.environ['LABEL']} | {op['ok']:,} | {d['throughput_ops_s']:,.0f} ops/s | "
      f"{ms(op['p50_us'])} / {ms(op['p99_us'])} / {ms(op['p999_us'])} ms | {d['errors']}{err} | {os.environ['LOAD']} |")
EOF
}

for n in "${NODES[@]}"; do serve $n; done
until_true 30 at n1 members
sleep 3
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# One prefix per write policy; all of them share the shards' logs and primaries.
at n1 range set --prefix pa: --mode primary --sync-replicas none --topology $TOPOLOGY >/dev/null
at n1 range set --prefix p1: --mode primary --sync-replicas 1 --topology $TOPOLOGY >/dev/null
at n1 range set --prefix pm: --mode primary --sync-replicas majority --topology $TOPOLOGY >/dev/null
at n1 range set --prefix fo: --mode primary --topology $TOPOLOGY >/dev/null
at n1 range set --prefix warm: --mode primary --topology $TOPOLOGY >/dev/null
has_rules() { at "$1" range list | grep -q warm:; }
for n in "${NODES[@]}"; do until_true 30 has_rules $n; done
# Elect every shard's primary (errors saying "retry" are expected here) and let replicas join.
at n1 bench --duration 4s --concurrency 8 --keys 1000 --read-ratio 0 --prefix warm: >/dev/null 2>&1 || true
sleep 3
for n in "${NODES[@]}"; do
  at $n -o json info replication | json "'$n: primary of %d shard(s), replicas online %d/%d' % (sum(r['role']=='primary' for r in d), sum(x['state']=='online' for r in d if r['role']=='primary' for x in r['replicas']), sum(len(r['replicas']) for r in d if r['role']=='primary'))"
done

echo "topology: $TOPOLOGY"
echo "== writes: ${SECS}s, $CONC clients through n1, $KEYS keys, $VALUE B values, 100% writes"
echo "| mode | writes ok | throughput | write p50 / p99 / p999 | errors | load avg (before -> after) |"
echo "|---|---|---|---|---|---|"
bench "quorum, W=2" q: 0
sleep 2
# Sample every node's replication state while the asynchronous load runs.
touch "$DIR/sampling"
(
  while [ -f "$DIR/sampling" ]; do
    for n in "${NODES[@]}"; do at $n -o json info replication 2>/dev/null | tr -d '\n'; echo; done
    sleep 0.25
  done >"$DIR/lag.jsonl"
) &
SAMPLER=$!; PIDS+=($SAMPLER)
bench "primary, sync none" pa: 0
rm -f "$DIR/sampling"; wait $SAMPLER || true
sleep 2
bench "primary, sync 1" p1: 0
sleep 2
bench "primary, sync majority" pm: 0
sleep 2

echo "== replicas' lag on their primaries during the sync-none run (samples every ~0.25 s per node)"
python3 - "$DIR/lag.jsonl" <<'EOF'
import json, sys
lags, ms, states = [], [], {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith('['):
        continue
    for shard in json.loads(line):
        if shard['role'] != 'primary':
            continue
        for r in shard['replicas']:
            states[r['state']] = states.get(r['state'], 0) + 1
            lags.append(shard['offset'] - r['offset'])
            if r['lag_ms'] is not None:
                ms.append(r['lag_ms'])
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else '-'
print(f"replica samples: {len(lags)}; states: {states}")
print(f"offset lag (entries): p50 {q(lags, .5)}, p90 {q(lags, .9)}, p99 {q(lags, .99)}, max {max(lags, default='-')}")
print(f"lag_ms (since last answer): p50 {q(ms, .5)}, p90 {q(ms, .9)}, p99 {q(ms, .99)}, max {max(ms, default='-')}")
EOF

echo "== reads: ${SECS}s, $CONC clients through n1, keys written above"
echo "| mode | reads ok | throughput | read p50 / p99 / p999 | errors | load avg (before -> after) |"
echo "|---|---|---|---|---|---|"
bench "quorum, R=2" q: 1
sleep 2
bench "primary, sync none (from the primary's store)" pa: 1
sleep 2
bench "primary, sync majority (read index)" pm: 1

echo "== failover: SIGKILL of a shard's primary -> first write acknowledged by the new primary"
for i in $(seq 1 "$TRIALS"); do
  key="fo:k$i"
  until_true 30 at n1 put "$key" before
  OLD=$(primary_of n1 "$key")
  until_true 30 all_online "$OLD" "$key"
  SURV=(); for n in "${NODES[@]}"; do [ "$n" != "$OLD" ] && SURV+=("$n"); done
  sleep 1
  # Kill, then start a write attempt every 50 ms, alternating between the two survivors
  # (each forwards to the shard's primary as it knows it); time the first acknowledged one.
  python3 - "$R" "$DIR/certs" "${PID[$OLD]}" "$key" "${ADDR[${SURV[0]}]}" "${ADDR[${SURV[1]}]}" <<'EOF' | tee -a "$DIR/failover.txt"
import os, signal, subprocess, sys, time
exe, certs, pid, key, *nodes = sys.argv[1:]
running, first_err, tries = [], None, 0
def put(node, value):
    return subprocess.Popen([exe, '--node', node, '--certs', certs, '--timeout', '3s', 'put', key, value],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
# What one acknowledged write costs this way (process start, connection, forward) before the kill.
b0 = time.monotonic()
base = put(nodes[0], 'base').wait()
base_s = time.monotonic() - b0
t0 = time.monotonic()
os.kill(int(pid), signal.SIGKILL)
done = None
next_try = t0
try:
    while done is None and time.monotonic() - t0 < 30:
        now = time.monotonic()
        if now >= next_try and len(running) < 40:
            node = nodes[tries % len(nodes)]
            running.append(put(node, f'after{tries}'))
            tries += 1
            next_try = now + 0.05
        for p in list(running):
            code = p.poll()
            if code is None:
                continue
            running.remove(p)
            if code == 0:
                done = time.monotonic() - t0
                break
            err = p.stderr.read().decode(errors='replace').strip()
            first_err = first_err or err
        time.sleep(0.005)
finally:
    for p in running:
        p.kill(); p.wait()
print(f"{done:.3f}" if done is not None else "none", f"attempts {tries}, one put before the kill {base_s:.3f} s (exit {base});",
      "first error:", (first_err or '-').replace('\n', ' ')[:200])
EOF
  NEW=$(primary_of "${SURV[0]}" "$key")
  echo "   (trial $i: killed $OLD, new primary $NEW)"
  serve "$OLD" "${SURV[0]}"
  until_true 60 all_online "$NEW" "$key"
  sleep 2
done
[ -f "$DIR/failover.txt" ] && python3 - "$DIR/failover.txt" <<'EOF' || true
import statistics, sys
t = [float(l.split()[0]) for l in open(sys.argv[1]) if l.split() and l.split()[0] != 'none']
if t:
    print(f"failover over {len(t)} trials: min {min(t):.2f} s, median {statistics.median(t):.2f} s, max {max(t):.2f} s")
EOF
