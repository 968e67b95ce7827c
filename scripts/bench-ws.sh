#!/usr/bin/env bash
# bench-ws.sh [ROUNDS] [SECONDS] — messages/s of a 64-byte WebSocket echo: examples/echo.rs
# (smolhttpd on a tap) against the same echo in Python's websockets server, on this machine.
# Not in CI: figures, not checks.
#
# Usage (as root):  sudo scripts/bench-ws.sh            # 5 rounds of 5 s each
#
# One client for both (scripts/ws/talk.py bench: Python's websockets, 64-byte binary messages,
# 32 in flight, every echo checked byte-exact), in a network namespace this script creates and
# deletes (smolhttpd-bws-PID). smolhttpd answers on 192.168.69.1 through the tap; the Python
# server listens on the tap's host side, 192.168.69.100:8765, in the same namespace (so its
# packets take the kernel's local path, not the tap: the comparison favours it). The servers
# take turns, smolhttpd first, ROUNDS times; each line is one run, the last two are the medians.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROUNDS=${1:-5}
SECS=${2:-5}
NS=smolhttpd-bws-$$
TALK=scripts/ws/talk.py
PY_PID=

stop_py() { stop_pid "$PY_PID"; PY_PID=; }
ON_CLEANUP=(stop_py)

need_root "network namespace + tap"
python3 -c 'import websockets.asyncio.client' 2>/dev/null ||
  timeout 300 pip install -q 'websockets>=13' >/dev/null 2>&1 ||
  die "Python's websockets missing: pip install websockets"
ECHO_BIN=${ECHO_BIN:-target/release/examples/echo}
[ -x "$ECHO_BIN" ] || cargo build --release --example echo || die "cargo build --example echo failed"
ECHO_BIN=$(realpath "$ECHO_BIN")
LOG=$(mktemp)
set_traps
make_tap_ns quiet
RUST_LOG=warn ip netns exec "$NS" "$ECHO_BIN" --tap "$TAP" >"$LOG" 2>&1 &
SERVER_PID=$!
server_up "$BASE/" 50 10 || exit 1
ip netns exec "$NS" python3 "$TALK" serve 192.168.69.100 8765 >/dev/null 2>&1 &
PY_PID=$!
sleep 1

run() { in_ns timeout $((SECS + 30)) python3 "$TALK" bench "$1" "$SECS" | sed -n 's/^rate: //p'; }
smol=() py=()
for r in $(seq 1 "$ROUNDS"); do
  s=$(run "ws://$SERVER_IP/echo"); p=$(run "ws://192.168.69.100:8765/")
  say "round $r: smolhttpd ${s:-?} msg/s, python websockets ${p:-?} msg/s"
  smol+=("${s:-0}"); py+=("${p:-0}")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
say "median: smolhttpd $(median "${smol[@]}") msg/s, python websockets $(median "${py[@]}") msg/s (64-byte echo, 32 in flight, $ROUNDS x $SECS s alternating)"
rm -f "$LOG"
