# Helpers the benchmark scripts share; sourced, not run.

# port: a loopback port free right now for both UDP (a node's QUIC) and TCP (its Redis front).
port() { python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'; }
# until_true SECONDS CMD...: retry CMD every 0.2 s until it succeeds; fail after SECONDS.
until_true() {
  local end=$(($(date +%s) + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $end ] || { echo "gave up waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}
# bench_init: the binary $R (a release build of ringctl, or $RINGCTL when set), a temporary
# directory $DIR, and $PIDS: every process listed there is stopped by pid on exit, on error and
# on Ctrl-C, and $DIR removed (KEEP=DIR keeps the nodes' logs there first).
bench_init() {
  if [ -z "${RINGCTL:-}" ]; then
    cargo build --release -q -p ringctl
    RINGCTL=$PWD/target/release/ringctl
  fi
  R=$RINGCTL
  DIR=$(mktemp -d)
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$DIR"/*.log "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$DIR"
}
# cpu_us PID...: utime + stime of each process, in microseconds, one per line.
cpu_us() {
  local tick; tick=$(getconf CLK_TCK)
  for p in "$@"; do awk -v t="$tick" '{sub(/.*\) /, ""); print ($12 + $13) * 1000000 / t}' "/proc/$p/stat"; done
}
# cpu_sum PID...: utime + stime of the processes together, in microseconds.
cpu_sum() { cpu_us "$@" | awk '{s+=$1} END {print s}'; }
# start_nodes NAME... -- SERVE_FLAGS...: certificates for each name (the CA made once in
# $DIR/certs), then one `ringctl serve` per name on a free loopback port, the first the seed of
# the others; fills the global maps ADDR[name] and PID[name] and $PIDS. Logs go to $DIR/NAME.log.
start_nodes() {
  local names=()
  while [ "$1" != "--" ]; do names+=("$1"); shift; done; shift
  [ -d "$DIR/certs" ] || $R certs init --dir "$DIR/certs" >/dev/null
  for n in "${names[@]}"; do
    $R certs issue --dir "$DIR/certs" --name "$n" --ip 127.0.0.1 >/dev/null
    ADDR[$n]=127.0.0.1:$(port)
  done
  for n in "${names[@]}"; do
    local seed=()
    [ "$n" != "${names[0]}" ] && seed=(--seed "${ADDR[${names[0]}]}")
    RUST_LOG=${NODE_LOG:-warn} $R serve --name "$n" --listen "${ADDR[$n]}" --data "$DIR/$n" --certs "$DIR/certs" \
      --on-signal stop "${seed[@]}" "$@" >>"$DIR/$n.log" 2>&1 &
    PIDS+=($!); PID[$n]=$!
    disown $!  # stopped on purpose at the end: no job-control notice
  done
}
# all_up NODE COUNT: whether the node at address NODE sees COUNT members alive and up.
all_up() {
  [ "$($R --node "$1" --certs "$DIR/certs" -o json members | python3 -c 'import json,sys; print(sum(m["state"]=="alive" and m["status"]=="up" for m in json.load(sys.stdin)))')" = "$2" ]
}
