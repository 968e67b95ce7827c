#!/usr/bin/env bash
# restart.sh — chat listeners across server restarts: the real smolhttpd binary on a real TAP
# device, stopped with SIGTERM (it says goodbye) and with SIGKILL (it cannot), while three
# listeners follow /chat/events.
#
# Usage (as root; CI runs it):  sudo scripts/restart.sh
#
# Everything happens inside a network namespace this script creates and deletes
# (smolhttpd-restart-PID): the tap, the servers and every client (curl, python3, the chat
# client, Chromium). No traffic leaves that namespace. Every wait and loop is bounded; every
# process is stopped by its PID.
#
# The listeners (their logs are JSON lines with the time each thing was seen, in $RESTART_OUT):
#   python   scripts/restart/listener.py: reads /chat/events like a browser's EventSource
#            (reopens it after the server's retry: with Last-Event-ID, every 2 s while the
#            server is down; a stream silent for 30 s is reopened); shows every message
#   chat     target/release/chat 192.168.69.1 80 --listen (under scripts/restart/stamp.py,
#            which timestamps its stdout and stderr lines)
#   page     /chat.html in headless Chromium (scripts/restart/page.mjs: the `.msg` rows read
#            from the DOM as the page inserts them, its EventSource's events)
#
# What is checked:
#   1. a first server; the three listeners have their streams open (3 slots `stream` in
#      /status); two posts (ids 1, 2) are shown by each within 2 s.
#   2. SIGTERM: each listener sees its stream end within 2 s: python gets a FIN (recv returns
#      0 bytes); the chat client's connection, watched in the kernel (sockwatch.py: /proc/net/tcp
#      and the process's fds), leaves ESTABLISHED and is closed by the client; the page's
#      EventSource fires its error event (readyState CONNECTING: it reconnects by itself; its
#      next /chat/events request is shown), and the stream's connection in Chromium's network
#      process (its port: the server log's third stream) is closed the same way. The server
#      exits within its 3 s grace (+1.5 s margin) with status 0, logs its goodbye and its
#      `stopped after` line, and logs each of the 3 streams (python's and chat's by their
#      ports) as `stream closed: server stopping`.
#   3. a new server on the same tap; a post gets id 1 (below the 2 the listeners saw); each
#      listener shows it within 5 s, and the page and the chat client say once that the server
#      was restarted. A second post (id 2) is shown by each within 2 s.
#   4. SIGKILL (no goodbye: the tap stays, the connections dangle; checked: python gets no FIN);
#      a new server; a post (id 1) is shown by each within 40 s (the page and the chat client
#      reopen a stream silent for 30 s, python too); the page and the chat client say once
#      that the server was restarted.
#   Last: no panic in any server log, no page errors, every listener still running.
# Then the times each listener took, one line each.
#
# Needs: iproute2, curl, python3, node >= 18 + npm (playwright-core, installed into
# scripts/e2e/node_modules on first use, as e2e.sh does), chromium, cargo (the release binaries
# are built with `cargo build --release` when missing or older than a source file).
#
# Env:
#   RESTART_OUT  artifacts: server logs, listener logs, page.png, times.tsv (default target/restart)
#   CHROMIUM     browser (default /usr/bin/chromium)
#
# Output: one line per check (`ok   - ...`, `FAIL - ...` with details), then
# `N passed, M failed`. Exit status 0 only if nothing failed.
# shellcheck disable=SC2317  # checks are called via check()
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${RESTART_OUT:-target/restart}
NS=smolhttpd-restart-$$
CURL_LIMITS=(--connect-timeout 5 --max-time 10)
J=scripts/restart/judge.py
# Every listener ends by itself after this many seconds (the whole run takes about 50 s).
LISTEN_SECS=400
# Limits (s). The goodbye: the server's poll loop sleeps at most 250 ms, so a FIN within 2 s
# is a wide margin; its grace is 3 s. After SIGTERM a listener reconnects within about 2-3 s
# of the new server (retry: 2000, plus an ARP probe); after SIGKILL within 30-35 s of the last
# byte it heard.
FIRST_LIMIT=2
END_LIMIT=2
EXIT_LIMIT=4.5
TERM_LIMIT=5
KILL_LIMIT=40

PY_PID= CHAT_PID= PAGE_PID= SOCK_PID= CHAT_CHILD= NET_PID=
POST_T0= POST_ID=

# The script always ends with its `N passed, M failed` line: a setup step that fails counts as
# a failed check.
die() { echo "$PROG: $*" >&2; echo "$PASS passed, $((FAIL + 1)) failed"; exit 2; }

# up N: server N ($LOG) answers within 10 s, else a failed check and the end.
up() {
  server_up "$BASE/" 50 10 && return 0
  report "server $1 comes up" 1 "$(tail -n 5 "$LOG")"
  finish
}

now() { date +%s.%N; }
# later A B: A > B (decimal seconds).
later() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

# ------------------------------------------------------------------ the binaries

# stale BIN: why BIN must be built (missing, or older than one of its sources), or nothing.
# Its sources: the files cargo lists in BIN.d (its dep-info: every source file, build.rs, the
# image's files and folders) plus the manifests and the lock file.
stale() {
  local b=$1 f
  [ -x "$b" ] || { echo "$b is missing"; return; }
  [ -f "$b.d" ] || { echo "$b.d (cargo's list of its sources) is missing"; return; }
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    if [ ! -e "$f" ]; then echo "${f#"$ROOT/"} (a source of $b) is gone"; return; fi
    if [ "$f" -nt "$b" ]; then echo "$b is older than ${f#"$ROOT/"}"; return; fi
  done < <({ sed 's/^[^:]*: *//' "$b.d" | tr ' ' '\n' | grep -v "^$ROOT/target/"
    printf '%s\n' Cargo.toml Cargo.lock smolhttpd-image/Cargo.toml; })
}

# fresh_bins: BIN and CHAT_BIN from target/release, after `cargo build --release` when one of
# them is stale (mtimes).
fresh_bins() {
  local b why
  why=$(stale target/release/smolhttpd)
  [ -n "$why" ] || why=$(stale target/release/chat)
  if [ -n "$why" ]; then
    need cargo "rustup (https://rustup.rs) or cargo"
    say "$why: cargo build --release"
    cargo build --release || die "cargo build --release failed"
    for b in target/release/smolhttpd target/release/chat; do
      why=$(stale "$b")
      [ -z "$why" ] || say "note after the build: $why"
    done
  else
    say "target/release/smolhttpd and chat are newer than their sources"
  fi
  BIN=$(realpath target/release/smolhttpd)
  CHAT_BIN=$(realpath target/release/chat)
}

# ------------------------------------------------------------------ listeners

PY_LOG= CHAT_LOG= PAGE_LOG= SOCK_LOG= TIMES=

start_listeners() {
  ip netns exec "$NS" python3 -u scripts/restart/listener.py "$SERVER_IP" "$PORT" "$PY_LOG" "$LISTEN_SECS" \
    >"$OUT/python.out" 2>"$OUT/python.err" &
  PY_PID=$!
  ip netns exec "$NS" python3 -u scripts/restart/stamp.py "$CHAT_LOG" -- \
    "$CHAT_BIN" "$SERVER_IP" "$PORT" --listen --for "$LISTEN_SECS" >"$OUT/chat.stamp.err" 2>&1 &
  CHAT_PID=$!
  ip netns exec "$NS" env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 TOTAL_TIMEOUT_MS=$((LISTEN_SECS * 1000)) \
    node scripts/restart/page.mjs "$BASE/chat.html" "$OUT" "$PAGE_LOG" >"$OUT/page.json" 2>"$OUT/page.err" &
  PAGE_PID=$!
}

# stop_listeners (ON_CLEANUP too): the page first (its stop file, up to 10 s for it to close
# Chromium), then the others; each by its PID.
stop_listeners() {
  if [ -n "$PAGE_PID" ]; then
    touch "$OUT/page.stop"
    for _ in $(seq 1 100); do kill -0 "$PAGE_PID" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$PAGE_PID" page.mjs
    PAGE_PID=
  fi
  stop_pid "$SOCK_PID"; SOCK_PID=
  stop_pid "$CHAT_PID" stamp.py; CHAT_PID=
  stop_pid "$PY_PID" listener.py; PY_PID=
}

# chat_child: the chat client's own PID (stamp.py's child), from stamp.py's log.
chat_child() {
  python3 -c 'import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("ev") == "start": print(e["pid"]); break' "$CHAT_LOG" 2>/dev/null
}

# net_pid: Chromium's network service process (it holds the page's sockets), if there is one.
net_pid() {
  local p
  for p in $(ip netns pids "$NS" 2>/dev/null); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'utility-sub-type=network.mojom.NetworkService'; then
      echo "$p"; return
    fi
  done
}

# ------------------------------------------------------------------ checks

# t_streams_open N SECONDS: /status shows N slots in state `stream`, the page's EventSource is
# open and python's stream is open, within SECONDS.
t_streams_open() {
  local want=$1 secs=$2 n=0 i
  for i in $(seq 1 $((secs * 2))); do
    n=$(ncurl "$BASE/status" 2>/dev/null | grep -o '"state":"stream"' | wc -l)
    if [ "$n" -ge "$want" ] && grep -q '"ev": *"es-open"' "$PAGE_LOG" 2>/dev/null &&
      grep -q '"ev": *"open"' "$PY_LOG" 2>/dev/null; then
      echo "info: $n streams after $(awk -v i="$i" 'BEGIN { printf "%.1f", i / 2 }') s"
      return 0
    fi
    kill -0 "$PAGE_PID" 2>/dev/null || { echo "page.mjs exited:"; tail -n 5 "$OUT/page.err"; cat "$OUT/page.json"; return 1; }
    sleep 0.5
  done
  echo "$n slots in state stream after $secs s, want $want"
  echo "python: $(tail -n 2 "$PY_LOG" 2>/dev/null)"
  echo "page: $(tail -n 3 "$PAGE_LOG" 2>/dev/null)"
  echo "chat: $(tail -n 3 "$CHAT_LOG" 2>/dev/null)"
  return 1
}

# t_post NAME TEXT [WANT_ID]: POST /chat; 201 and {"id":N} (N = WANT_ID if given). Sets
# POST_T0 (just before the request) and POST_ID. Runs in this shell (check_here).
t_post() {
  local name=$1 text=$2 want=${3:-} code
  POST_ID=
  rm -f "$TMPD/post.json"
  POST_T0=$(now)
  code=$(ncurl -o "$TMPD/post.json" -w '%{http_code}' --data-urlencode "name=$name" \
    --data-urlencode "text=$text" "$BASE/chat") || { echo "curl failed"; return 1; }
  [ "$code" = 201 ] || { echo "status $code, want 201: $(cat "$TMPD/post.json")"; return 1; }
  POST_ID=$(sed -n 's/^{"id":\([0-9]*\)}$/\1/p' "$TMPD/post.json")
  echo "info: 201 $(cat "$TMPD/post.json")"
  if [ -n "$want" ] && [ "$POST_ID" != "$want" ]; then echo "id '$POST_ID', want $want"; return 1; fi
}

# wait_shown NAME TEXT LIMIT: until the three listeners show NAME: TEXT (posted at POST_T0), at
# most LIMIT s after the post.
wait_shown() {
  [ -n "$POST_T0" ] || return 0
  python3 "$J" wait "$POST_T0" "$3" "$1" "$2" python="$PY_LOG" chat="$CHAT_LOG" page="$PAGE_LOG"
}

# t_shown KIND LOG NAME TEXT LIMIT LABEL: the listener shows NAME: TEXT within LIMIT s of the post.
t_shown() {
  [ -n "$POST_T0" ] || { echo "not posted"; return 1; }
  TIMES=$TIMES LABEL=$6 python3 "$J" shown "$1" "$2" "$3" "$4" "$POST_T0" "$5"
}

# t_ended KIND LOG T0 LABEL [WHO [PORTS]]: the listener saw its stream end within END_LIMIT s
# of T0 (sock: WHO's connections, only those on local PORTS if given).
t_ended() {
  TIMES=$TIMES LABEL=$4 WHO=${5:-chat} PORTS=${6:-} python3 "$J" ended "$1" "$2" "$3" "$END_LIMIT"
}

# t_exit T0 T_EXIT RC: the server exited within EXIT_LIMIT s of the signal, with status 0.
t_exit() {
  local t0=$1 t1=$2 rc=$3 d
  [ -n "$t1" ] || { echo "the server still runs $(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s after SIGTERM"; tail -n 5 "$LOG"; return 1; }
  d=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
  printf 'sigterm/server exit\t%s\n' "$d" >>"$TIMES"
  echo "info: exited ${d} s after SIGTERM, status $rc"
  later "$d" "$EXIT_LIMIT" && { echo "exited after ${d} s, want <= $EXIT_LIMIT s (grace 3 s)"; return 1; }
  [ "$rc" = 0 ] || { echo "exit status $rc, want 0"; tail -n 5 "$LOG"; return 1; }
}

# t_goodbye_log: the server logged its goodbye and its stop line.
t_goodbye_log() {
  local bye stopped
  bye=$(grep -m1 'stopping: saying goodbye' "$LOG")
  stopped=$(grep -m1 '^smolhttpd: stopped after' "$LOG")
  [ -n "$bye" ] || { echo "no 'stopping: saying goodbye' line; log tail:"; tail -n 5 "$LOG"; return 1; }
  [ -n "$stopped" ] || { echo "no 'smolhttpd: stopped after' line; log tail:"; tail -n 5 "$LOG"; return 1; }
  echo "info: ${bye#*] }"
  echo "info: $stopped"
}

# t_streams_closed_log PY_PORT CHAT_PORT: 3 lines `GET /chat/events ... stream closed: server
# stopping`, among them python's and the chat client's connections (by their local ports).
t_streams_closed_log() {
  local py=$1 chat=$2 lines n bad=0
  lines=$(grep 'GET /chat/events.*stream closed: server stopping' "$LOG")
  n=$(printf '%s' "$lines" | grep -c .)
  printf '%s\n' "$lines" | sed 's/^[^]]*\] /info: /'
  [ "$n" = 3 ] || { echo "$n such lines, want 3"; bad=1; }
  [ -z "$py" ] || printf '%s\n' "$lines" | grep -q ":$py GET " || { echo "none for python's port $py"; bad=1; }
  [ -z "$chat" ] || printf '%s\n' "$lines" | grep -q ":$chat GET " || { echo "none for the chat client's port $chat"; bad=1; }
  return "$bad"
}

# t_notes KIND LOG T0 T1 WANT: the client said "server was restarted" WANT times in (T0, T1].
t_notes() {
  local n
  n=$(python3 "$J" notes "$1" "$2" "$3" "$4")
  echo "info: $n time(s)"
  [ "$n" = "$5" ] || { echo "said it $n times, want $5"; python3 "$J" dump "$2" "$3" | tail -n 15; return 1; }
}

# t_alive: the listeners still run.
t_alive() {
  local bad=0
  kill -0 "$PY_PID" 2>/dev/null || { echo "listener.py exited: $(tail -n 3 "$OUT/python.err")"; bad=1; }
  kill -0 "$CHAT_PID" 2>/dev/null || { echo "the chat client exited: $(tail -n 3 "$CHAT_LOG")"; bad=1; }
  kill -0 "$PAGE_PID" 2>/dev/null || { echo "page.mjs exited: $(tail -n 3 "$OUT/page.err")"; bad=1; }
  return "$bad"
}

t_no_panic_logs() {
  local f bad=0
  for f in "$OUT"/server-*.log; do
    if grep -q 'panicked' "$f"; then echo "$f:"; grep -m3 'panicked' "$f"; bad=1; fi
  done
  return "$bad"
}

t_page_errors() {
  if grep -q '"ev": *"pageerror"' "$PAGE_LOG"; then grep '"ev": *"pageerror"' "$PAGE_LOG" | head -n 5; return 1; fi
  local n
  n=$(grep -c '"ev": *"msg"' "$PAGE_LOG")
  echo "info: $n message rows added; console lines: $(grep -c '"ev": *"console"' "$PAGE_LOG")"
}

# t_page_summary: page.mjs ended by its stop file with its summary ok; every message posted is
# in the page's DOM at the end (.msg .text).
t_page_summary() {
  python3 - "$OUT/page.json" "$PAGE_LOG" "$@" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no JSON summary from page.mjs ({e})"); sys.exit(1)
for f in s.get("failures") or []:
    print("failure: " + f)
shown = s.get("shown") or []
missing = [t for t in sys.argv[3:] if t not in shown]
print(f"info: the DOM's .msg .text at the end: {shown}")
if missing:
    print(f"not in the DOM: {missing}")
sys.exit(0 if s.get("ok") and not missing else 1)
PY
}

# ------------------------------------------------------------------ setup

on_fail() {
  local f
  for f in "$OUT"/server-*.log; do echo "--- last 8 lines of $f"; tail -n 8 "$f"; done
  echo "--- listener logs: $PY_LOG $CHAT_LOG $PAGE_LOG $SOCK_LOG"
}

need_root "network namespace + tap"
need ip iproute2
need curl curl
need python3 python3
need timeout coreutils
need awk gawk
need_browser
fresh_bins

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
rm -f "$OUT"/*.jsonl "$OUT"/server-*.log "$OUT"/times.tsv "$OUT"/page.stop "$OUT"/page.png \
  "$OUT"/page.json "$OUT"/page.err "$OUT"/python.out "$OUT"/python.err "$OUT"/chat.stamp.err
PY_LOG=$OUT/python.jsonl CHAT_LOG=$OUT/chat.jsonl PAGE_LOG=$OUT/page.jsonl SOCK_LOG=$OUT/sock.jsonl
TIMES=$OUT/times.tsv
: >"$TIMES"
set_traps
ON_CLEANUP+=(stop_listeners)
make_tap_ns quiet
say "namespace $NS; server $BIN; chat $CHAT_BIN; logs in $OUT"

# ------------------------------------------------------------------ 1. first server

section "1. the first server and three listeners"
LOG=$OUT/server-1.log
start_server
up 1
start_listeners
check "python, chat --listen and the page have their streams open (3 slots 'stream' in /status)" t_streams_open 3 60
CHAT_CHILD=$(chat_child)
for i in 1 2; do
  text="before any restart ($i)"
  check_here "POST /chat ana: '$text': 201, id $i" t_post ana "$text" "$i"
  wait_shown ana "$text" "$FIRST_LIMIT"
  check "python listener shows it within $FIRST_LIMIT s" t_shown python "$PY_LOG" ana "$text" "$FIRST_LIMIT" "first post $i/python"
  check "chat --listen shows it within $FIRST_LIMIT s" t_shown chat "$CHAT_LOG" ana "$text" "$FIRST_LIMIT" "first post $i/chat"
  check "the page shows it (.msg .text) within $FIRST_LIMIT s" t_shown page "$PAGE_LOG" ana "$text" "$FIRST_LIMIT" "first post $i/page"
done

# ------------------------------------------------------------------ 2. SIGTERM

section "2. SIGTERM: the server says goodbye"
NET_PID=$(net_pid)
watch=()
[ -n "$CHAT_CHILD" ] && watch+=("chat=$CHAT_CHILD")
[ -n "$NET_PID" ] && watch+=("chromium=$NET_PID")
PY_PORT=$(python3 -c 'import json, sys
p = ""
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("ev") == "open": p = e.get("port")
print(p)' "$PY_LOG" 2>/dev/null)
if ((${#watch[@]})); then
  ip netns exec "$NS" python3 scripts/restart/sockwatch.py "$SERVER_IP" "$PORT" 3.5 "$SOCK_LOG" "${watch[@]}" \
    >"$OUT/sockwatch.err" 2>&1 &
  SOCK_PID=$!
  for _ in $(seq 1 50); do grep -q '"ev": "ready"' "$SOCK_LOG" 2>/dev/null && break; sleep 0.1; done
fi
CHAT_PORT=$(python3 -c 'import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("ev") == "sock" and e.get("who") == "chat" and e.get("state") == "ESTABLISHED": print(e["port"])' "$SOCK_LOG" 2>/dev/null | tail -n 1)
T_SIG=$(now)
kill -TERM "$SERVER_PID"
T_EXIT=
for _ in $(seq 1 160); do
  kill -0 "$SERVER_PID" 2>/dev/null || { T_EXIT=$(now); break; }
  sleep 0.05
done
SERVER_RC=
if [ -n "$T_EXIT" ]; then wait "$SERVER_PID"; SERVER_RC=$?; SERVER_PID=; fi
# Let the listeners' 2 s pass (sockwatch ends by itself 3.5 s after it started).
sleep "$(awk -v t="$T_SIG" -v n="$(now)" 'BEGIN { d = t + 2.5 - n; printf "%.2f", (d > 0 ? d : 0) }')"
[ -n "$SOCK_PID" ] && { wait "$SOCK_PID" 2>/dev/null; SOCK_PID=; }
check "the server exits within its 3 s grace (+1.5 s), status 0" t_exit "$T_SIG" "$T_EXIT" "$SERVER_RC"
stop_server   # only if it did not exit: a second SIGTERM quits at once
check "the server logged its goodbye and 'smolhttpd: stopped after ...'" t_goodbye_log
check "the server logged the 3 streams as 'stream closed: server stopping' (python's port ${PY_PORT:-?}, chat's ${CHAT_PORT:-?})" \
  t_streams_closed_log "$PY_PORT" "$CHAT_PORT"
check "python listener: its stream ends with a FIN within $END_LIMIT s" t_ended python "$PY_LOG" "$T_SIG" "sigterm/python stream end"
if [ -n "$CHAT_CHILD" ]; then
  check "chat --listen: its connection gets the FIN and the client closes it within $END_LIMIT s (kernel state, /proc/net/tcp)" \
    t_ended sock "$SOCK_LOG" "$T_SIG" "sigterm/chat stream end" chat
else
  report "chat --listen: its connection gets the FIN" 1 "no chat PID in $CHAT_LOG"
fi
check "the page: its EventSource fires error (the stream ended) within $END_LIMIT s" t_ended page "$PAGE_LOG" "$T_SIG" "sigterm/page stream end"
# The page's stream: the third port the server logged as a stream closed at the stop.
PAGE_PORT=$(grep 'GET /chat/events.*stream closed: server stopping' "$LOG" | sed -n 's/.*:\([0-9]*\) GET .*/\1/p' |
  grep -vx -e "${PY_PORT:-x}" -e "${CHAT_PORT:-x}" | head -n 1)
if [ -n "$NET_PID" ] && [ -n "$PAGE_PORT" ]; then
  check "the page: its stream's connection (port $PAGE_PORT, held by Chromium's network process) gets the FIN and is closed within $END_LIMIT s" \
    t_ended sock "$SOCK_LOG" "$T_SIG" "sigterm/chromium stream socket end" chromium "$PAGE_PORT"
else
  report "the page: its stream's connection in Chromium's network process" 77 \
    "info: network process ${NET_PID:-not found}, stream port ${PAGE_PORT:-not in the log}"
fi

# ------------------------------------------------------------------ 3. a new server

section "3. a new server after SIGTERM"
LOG=$OUT/server-2.log
start_server
up 2
text="after SIGTERM and a new server"
check_here "POST /chat bea: '$text': 201, id 1 (the listeners saw 2)" t_post bea "$text" 1
wait_shown bea "$text" "$TERM_LIMIT"
check "python listener shows it within $TERM_LIMIT s" t_shown python "$PY_LOG" bea "$text" "$TERM_LIMIT" "sigterm/python shows post"
check "chat --listen shows it within $TERM_LIMIT s" t_shown chat "$CHAT_LOG" bea "$text" "$TERM_LIMIT" "sigterm/chat shows post"
check "the page shows it within $TERM_LIMIT s" t_shown page "$PAGE_LOG" bea "$text" "$TERM_LIMIT" "sigterm/page shows post"
check "chat --listen says once that the server was restarted" t_notes chat "$CHAT_LOG" "$T_SIG" "$(now)" 1
check "the page says once '(the server was restarted)'" t_notes page "$PAGE_LOG" "$T_SIG" "$(now)" 1
text="second on the new server"
check_here "POST /chat bea: '$text': 201, id 2" t_post bea "$text" 2
wait_shown bea "$text" "$FIRST_LIMIT"
check "python listener shows it within $FIRST_LIMIT s" t_shown python "$PY_LOG" bea "$text" "$FIRST_LIMIT" "server 2 post 2/python"
check "chat --listen shows it within $FIRST_LIMIT s" t_shown chat "$CHAT_LOG" bea "$text" "$FIRST_LIMIT" "server 2 post 2/chat"
check "the page shows it within $FIRST_LIMIT s" t_shown page "$PAGE_LOG" bea "$text" "$FIRST_LIMIT" "server 2 post 2/page"

# ------------------------------------------------------------------ 4. SIGKILL

section "4. SIGKILL: no goodbye, the connections dangle"
T_KILL=$(now)
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=
LOG=$OUT/server-3.log
start_server
up 3
text="after SIGKILL and a new server"
check_here "POST /chat cleo: '$text': 201, id 1 (the listeners saw 2)" t_post cleo "$text" 1
say "waiting up to $KILL_LIMIT s for the listeners to notice their silent streams"
wait_shown cleo "$text" "$KILL_LIMIT"
check "python listener: no FIN or reset after the SIGKILL (its connection dangled until its 30 s read timeout)" \
  python3 "$J" nofin "$PY_LOG" "$T_KILL" "$(now)"
check "python listener shows it within $KILL_LIMIT s" t_shown python "$PY_LOG" cleo "$text" "$KILL_LIMIT" "sigkill/python shows post"
check "chat --listen shows it within $KILL_LIMIT s" t_shown chat "$CHAT_LOG" cleo "$text" "$KILL_LIMIT" "sigkill/chat shows post"
check "the page shows it within $KILL_LIMIT s" t_shown page "$PAGE_LOG" cleo "$text" "$KILL_LIMIT" "sigkill/page shows post"
check "chat --listen says once that the server was restarted" t_notes chat "$CHAT_LOG" "$T_KILL" "$(now)" 1
check "the page says once '(the server was restarted)'" t_notes page "$PAGE_LOG" "$T_KILL" "$(now)" 1
# When each reopened its silent stream (after the SIGKILL), for the record.
{
  printf 'sigkill/python reopens (read timeout; after SIGKILL)\t%s\n' "$(python3 "$J" first python "$PY_LOG" "$T_KILL" timeout)"
  printf 'sigkill/page first note (after SIGKILL)\t%s\n' "$(python3 "$J" first page "$PAGE_LOG" "$T_KILL" note)"
  printf 'sigkill/chat first stderr line (after SIGKILL)\t%s\n' "$(python3 "$J" first chat "$CHAT_LOG" "$T_KILL" err)"
} >>"$TIMES"

# ------------------------------------------------------------------ the end

section "the end"
check "no panic in any server log" t_no_panic_logs
check "the third server still runs" t_no_panic
check "python, chat --listen and page.mjs still run" t_alive
check "the page: no uncaught errors" t_page_errors
stop_listeners
check "page.mjs ended cleanly; the DOM holds every post" t_page_summary \
  "before any restart (1)" "before any restart (2)" "after SIGTERM and a new server" \
  "second on the new server" "after SIGKILL and a new server"

section "times (seconds: after the signal for stream ends and exits, after the post for shown)"
awk -F'\t' '{ printf "  %-42s %s\n", $1, $2 }' "$TIMES"
echo
finish
