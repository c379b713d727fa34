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
