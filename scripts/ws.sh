#!/usr/bin/env bash
# ws.sh — WebSocket end to end: the real smolhttpd binary on a real TAP device, talked to by
# WebSocket clients nobody here wrote: Python's `websockets` library, headless Chromium's
# WebSocket (the chat page), and wscat (npm); then examples/echo.rs the same way.
#
# Usage (as root; CI runs it):  sudo scripts/ws.sh
#
# Everything happens inside a network namespace this script creates and deletes
# (smolhttpd-ws-PID): the tap, the server and every client. No traffic leaves it. Every wait is
# bounded; every process is stopped by its PID.
#
# Checks:
#   handshake   curl's upgrade request: 101 with Upgrade, Connection and the RFC 6455 sample
#               key's Sec-WebSocket-Accept; version 8: 400 with Sec-WebSocket-Version: 13; no
#               key: 400
#   python      1,000 chat posts in and 1,000 messages out on /chat/ws (a third of them sent in
#               fragments), byte-exact, in order (scripts/ws/talk.py chat); the close answered
#               with 1000
#   cap         six sockets held open by python: a seventh upgrade gets 503 with Retry-After;
#               once they close, an upgrade gets 101 again
#   chromium    /chat.html over WebSocket (scripts/ws/page.mjs): posts and receives on one
#               socket, the server's JSON error for a long text, another client's post shown
#               within 500 ms, no HTTP fallback
#   wscat       a post with wscat comes back to it on the socket, and GET /chat has it
#   chat --ws   the terminal client posts piped lines over /chat/ws (exit 0), `--ws --listen`
#               prints them, a 300-byte line is refused with the server's JSON error (413)
#   echo        examples/echo.rs: 1,000 messages each way, text and binary up to 1,800 bytes,
#               fragmented and not, byte-exact (python); 64-byte messages 32 in flight for
#               3 x 2 s with no reply late (10 s); wscat's text echoed
#   firmware    the mps2-an386 firmware (its chat has /chat/ws: it builds the library with `ws`;
#               own target dir, so firmware-test.sh's builds are not disturbed), booted in QEMU on the
#               same tap: 200 chat posts each way over /chat/ws with Python's websockets, and
#               Chromium's chat page over WebSocket from the board (WS_SKIP_FIRMWARE=1 skips)
#   Last: no panic in the logs.
#
# Needs: iproute2, curl, python3 (+ websockets, installed with pip when missing), node >= 18
# + npm (playwright-core as e2e.sh installs it; wscat into target/ws-node), chromium, cargo.
#
# Env: WS_OUT artifacts (default target/ws); WS_SKIP_BROWSER=1 skips the Chromium check.
#
# Output: one line per check, then `N passed, M failed`. Exit status 0 only if nothing failed.
# shellcheck disable=SC2317  # checks are called via check()
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${WS_OUT:-target/ws}
NS=smolhttpd-ws-$$
CURL_LIMITS=(--connect-timeout 5 --max-time 10)
TALK=scripts/ws/talk.py
KEY=dGhlIHNhbXBsZSBub25jZQ==
ACCEPT=s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
WSCAT=
HOLD_PID=
QEMU_PID=
FW_ELF=target/ws-firmware/thumbv7em-none-eabihf/release/smolhttpd-firmware

on_fail() { echo "--- last 20 lines of $LOG"; tail -n 20 "$LOG"; }
stop_hold() { stop_pid "$HOLD_PID"; HOLD_PID=; }
stop_qemu() { stop_pid "$QEMU_PID"; QEMU_PID=; }
ON_CLEANUP=(stop_hold stop_qemu)

# upgrade_head PATH [VERSION] [KEY]: the response head to an upgrade request (curl stops after
# 2 s: a 101 leaves the connection open).
upgrade_head() {
  local path=$1 version=${2:-13} key=${3-$KEY}
  in_ns curl -sS --noproxy '*' --max-time 2 -o /dev/null -D - \
    -H 'Upgrade: websocket' -H 'Connection: Upgrade' -H "Sec-WebSocket-Version: $version" \
    ${key:+-H "Sec-WebSocket-Key: $key"} "$BASE$path" 2>/dev/null | tr -d '\r'
}

t_handshake() {
  local h
  h=$(upgrade_head /chat/ws)
  echo "$h" | grep -q '^HTTP/1.1 101 Switching Protocols$' || { echo "no 101: $h"; return 1; }
  echo "$h" | grep -qi '^upgrade: websocket$' || { echo "no Upgrade: $h"; return 1; }
  echo "$h" | grep -qi '^connection: upgrade$' || { echo "no Connection: Upgrade: $h"; return 1; }
  echo "$h" | grep -q "^Sec-WebSocket-Accept: $ACCEPT\$" || { echo "wrong accept: $h"; return 1; }
  h=$(upgrade_head /chat/ws 8)
  echo "$h" | grep -q '^HTTP/1.1 400 ' || { echo "version 8: $h"; return 1; }
  echo "$h" | grep -q '^Sec-WebSocket-Version: 13$' || { echo "version 8 without the version: $h"; return 1; }
  h=$(upgrade_head /chat/ws 13 '')
  echo "$h" | grep -q '^HTTP/1.1 400 ' || { echo "no key: $h"; return 1; }
  echo "info: 101 with Sec-WebSocket-Accept $ACCEPT; 400 (+ Sec-WebSocket-Version: 13 for version 8)"
}

t_python_chat() { in_ns timeout 120 python3 "$TALK" chat "ws://$SERVER_IP/chat/ws" 1000; }

t_cap() {
  local h
  in_ns timeout 30 python3 - "ws://$SERVER_IP/chat/ws" >"$TMPD/hold.out" 2>&1 <<'PY' &
import asyncio, sys
from websockets.asyncio.client import connect
async def main():
    # Unread backlog must not stall the closing handshakes: no bound on the queue.
    socks = [await connect(sys.argv[1], compression=None, ping_interval=None, max_queue=None)
             for _ in range(6)]
    print("open", flush=True)
    await asyncio.sleep(4)
    await asyncio.gather(*(s.close() for s in socks))
    print("closed", [s.close_code for s in socks], flush=True)
asyncio.run(main())
PY
  HOLD_PID=$!
  for _ in $(seq 1 50); do grep -q open "$TMPD/hold.out" && break; sleep 0.1; done
  grep -q open "$TMPD/hold.out" || { echo "python did not open 6 sockets: $(cat "$TMPD/hold.out")"; return 1; }
  h=$(upgrade_head /chat/ws)
  echo "$h" | grep -q '^HTTP/1.1 503 ' || { echo "seventh: $h"; return 1; }
  echo "$h" | grep -q '^Retry-After: 5$' || { echo "seventh without Retry-After: $h"; return 1; }
  wait "$HOLD_PID"; HOLD_PID=
  grep -q closed "$TMPD/hold.out" || { echo "python: $(cat "$TMPD/hold.out")"; return 1; }
  sleep 0.5
  h=$(upgrade_head /chat/ws)
  echo "$h" | grep -q '^HTTP/1.1 101 ' || { echo "after they closed: $h"; return 1; }
  echo "info: the seventh got 503 with Retry-After: 5; 101 again once the six closed"
}

t_page() {
  in_ns timeout 90 node scripts/ws/page.mjs "$BASE/chat.html" "$OUT" >"$OUT/page.json" 2>"$OUT/page.err"
  local rc=$?
  python3 - "$OUT/page.json" <<'PY' || rc=1
import json, sys
s = json.load(open(sys.argv[1]))
for f in s.get("failures", []):
    print(f)
print(f"info: mode={s.get('mode')}; frames sent {len(s.get('framesSent') or [])}, received {s.get('framesReceived')}; "
      f"another client's post shown in {s.get('otherToPageMs')} ms; status for a long text: {s.get('tooLong')!r}")
sys.exit(0 if s.get("ok") else 1)
PY
  [ "$rc" -eq 0 ] || tail -n 5 "$OUT/page.err"
  return "$rc"
}

# wscat_say URL TEXT: what wscat prints for its session (it sends TEXT, prints what comes in
# for 1 s, closes). Its stdin stays open meanwhile: wscat exits at once on end of input.
wscat_say() { sleep 3 | in_ns timeout 20 "$WSCAT" --no-color -c "$1" -x "$2" -w 1 2>&1; }

t_wscat_chat() {
  [ -n "$WSCAT" ] || { echo "wscat unavailable (npm install wscat failed)"; return 77; }
  local out
  local last
  last=$(ncurl "$BASE/chat?since=999999999" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
  out=$(wscat_say "ws://$SERVER_IP/chat/ws?since=$last" '{"name":"wscat","text":"from wscat"}')
  echo "$out" | grep -q '"name":"wscat","text":"from wscat"' || { echo "wscat got: $out"; return 1; }
  ncurl "$BASE/chat?since=0" | grep -q '"text":"from wscat"' || { echo "GET /chat does not have it"; return 1; }
  echo "info: wscat $("$WSCAT" --version 2>/dev/null) posted and got its message back"
}

t_cli() {
  local out
  printf 'from the cli over ws\nand a second line\n' |
    in_ns timeout 20 "$CHAT_BIN" "$SERVER_IP" 80 --ws --name cliws || { echo "posting exited $?"; return 1; }
  out=$(in_ns timeout 20 "$CHAT_BIN" "$SERVER_IP" 80 --ws --listen --for 2 2>&1)
  echo "$out" | grep -q '^cliws: from the cli over ws$' || { echo "--listen printed: $(echo "$out" | tail -n 5)"; return 1; }
  echo "$out" | grep -q '^cliws: and a second line$' || { echo "second line missing: $(echo "$out" | tail -n 5)"; return 1; }
  out=$(printf '%0300d\n' 0 | in_ns timeout 20 "$CHAT_BIN" "$SERVER_IP" 80 --ws 2>&1) && { echo "a 300-byte line was taken"; return 1; }
  echo "$out" | grep -q 'too long (413)' || { echo "refusal said: $out"; return 1; }
  echo "info: piped lines posted over /chat/ws and shown by --ws --listen; a long line refused: ${out#chat: }"
}

t_fw_chat() { in_ns timeout 120 python3 "$TALK" chat "ws://$SERVER_IP/chat/ws" 200; }

t_echo_python() { in_ns timeout 120 python3 "$TALK" echo "ws://$SERVER_IP/echo" 1000; }

# 64-byte messages, 32 in flight, one sent per echo back, three runs of 2 s: each must end
# without a reply waiting 10 s (frames across the end of the server's receive ring once waited
# for a segment that a client waiting for echoes never sends).
t_echo_inflight() {
  local r rates=()
  for _ in 1 2 3; do
    r=$(in_ns timeout 40 python3 "$TALK" bench "ws://$SERVER_IP/echo" 2) || { echo "$r"; return 1; }
    rates+=("${r#rate: }")
  done
  echo "info: 64-byte echo with 32 in flight: ${rates[*]} messages/s"
}

t_wscat_echo() {
  [ -n "$WSCAT" ] || { echo "wscat unavailable"; return 77; }
  local out
  out=$(wscat_say "ws://$SERVER_IP/echo" 'echo ñ this')
  [ "$out" = 'echo ñ this' ] || { echo "wscat got: $out"; return 1; }
  echo "info: wscat's text came back"
}

# ------------------------------------------------------------------ setup

need_root "network namespace + tap"
need ip iproute2
need curl curl
need python3 python3
if ! python3 -c 'import websockets.asyncio.client' 2>/dev/null; then
  say "installing Python's websockets (pip)"
  timeout 300 pip install -q 'websockets>=13' >/dev/null 2>&1 ||
    timeout 300 pip install -q --break-system-packages 'websockets>=13' >/dev/null 2>&1 ||
    die "could not install websockets: pip install websockets"
fi
[ "${WS_SKIP_BROWSER:-0}" = 1 ] || need_browser
WSCAT=target/ws-node/node_modules/.bin/wscat
if [ ! -x "$WSCAT" ] && command -v npm >/dev/null 2>&1; then
  say "installing wscat into target/ws-node (npm)"
  timeout 300 npm install --no-audit --no-fund --no-package-lock --loglevel=error \
    --prefix target/ws-node wscat@6 >/dev/null 2>&1 || say "npm install wscat failed: its checks are skipped"
fi
[ -x "$WSCAT" ] && WSCAT=$(realpath "$WSCAT") || WSCAT=

release_bins "smolhttpd, chat"
ECHO_BIN=${ECHO_BIN:-target/release/examples/echo}
if [ ! -x "$ECHO_BIN" ]; then
  say "building examples/echo.rs"
  cargo build --release --example echo || die "cargo build --example echo failed"
fi
ECHO_BIN=$(realpath "$ECHO_BIN")

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/server.log
set_traps
make_tap_ns quiet
start_server
server_up "$BASE/" 50 10 || exit 1

section "the chat over WebSocket (smolhttpd binary)"
check "handshake: 101 with the RFC's accept key; 400, with Sec-WebSocket-Version: 13 for version 8" t_handshake
check "python websockets: 1,000 posts in, 1,000 messages out, byte-exact, fragmented and not" t_python_chat
check_here "cap: six sockets open, the seventh gets 503 with Retry-After; 101 once they close" t_cap
if [ "${WS_SKIP_BROWSER:-0}" = 1 ]; then
  report "chromium: /chat.html over WebSocket" 77 "WS_SKIP_BROWSER=1"
else
  check "chromium: /chat.html posts and receives over one WebSocket (no HTTP fallback)" t_page
fi
check "wscat: a post over the socket comes back, GET /chat has it" t_wscat_chat
check "chat --ws: piped lines posted over the socket, --ws --listen shows them, a long one refused" t_cli
check "server still running, no panic" t_no_panic

section "examples/echo.rs"
stop_server
LOG=$OUT/echo.log
RUST_LOG=info ip netns exec "$NS" "$ECHO_BIN" --tap "$TAP" >"$LOG" 2>&1 &
SERVER_PID=$!
if server_up "$BASE/" 50 10; then
  check "python websockets: 1,000 messages each way on /echo, text and binary, fragmented and not" t_echo_python
  check "python websockets: 32 messages in flight, three runs of 2 s, no reply late" t_echo_inflight
  check "wscat: its text echoed" t_wscat_echo
  check "echo still running, no panic" t_no_panic
else
  report "echo: example came up" 1 "$(tail -n 5 "$LOG")"
fi

if [ "${WS_SKIP_FIRMWARE:-0}" != 1 ]; then
  section "firmware: mps2-an386 in QEMU with the ws feature"
  stop_server
  if ! command -v qemu-system-arm >/dev/null; then
    say "installing qemu-system-arm"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-arm; } >/dev/null 2>&1
  fi
  rustup target list --installed 2>/dev/null | grep -q '^thumbv7em-none-eabihf$' || rustup target add thumbv7em-none-eabihf >/dev/null 2>&1
  FW_ELF=$ROOT/$FW_ELF
  if ! command -v qemu-system-arm >/dev/null; then
    report "firmware: qemu-system-arm" 1 "could not install qemu-system-arm"
  elif ! (cd firmware && CARGO_TARGET_DIR=$ROOT/target/ws-firmware cargo build --release -q); then
    report "firmware: builds (its default features include ws)" 1 "cargo build failed"
  else
    LOG=$OUT/firmware-uart.log
    ip netns exec "$NS" timeout -k 5 300 qemu-system-arm -M mps2-an386 -nographic -no-reboot \
      -nic "tap,ifname=$TAP,script=no,downscript=no,model=lan9118,mac=02:00:00:00:00:01" \
      -kernel "$FW_ELF" </dev/null >"$LOG" 2>&1 &
    QEMU_PID=$!
    # The board waits 3 s for DHCP before its static address.
    if wait_up "$NS" "$QEMU_PID" "$BASE/" 150 1 2; then
      check "firmware: python websockets, 200 posts each way over /chat/ws, fragmented and not" t_fw_chat
      if [ "${WS_SKIP_BROWSER:-0}" != 1 ]; then
        check "firmware: chromium's chat page over WebSocket from the board" t_page
      fi
      SERVER_PID=$QEMU_PID
      check "firmware still running, no panic" t_no_panic
      SERVER_PID=
    else
      report "firmware: answered on $BASE/ within 30 s" 1 "$(tail -n 5 "$LOG")"
    fi
    stop_qemu
  fi
fi

echo
finish
