#!/usr/bin/env bash
# e2e.sh — end-to-end test of the real smolhttpd binary on a real TAP device.
#
# Usage (as root; CI runs it):  sudo scripts/e2e.sh
#
# Everything happens inside a network namespace this script creates and deletes
# (smolhttpd-e2e-PID): the tap, the server and every client (curl, bash /dev/tcp, python3,
# the chat CLI, wrk, redbot, Chromium). No traffic leaves that namespace. Every wait and
# loop is bounded.
#
# Sections: static files; browser (home page); chat (CLI clients + chat page in Chromium);
# HTTP/1.1 (ranges, gzip, 304, keep-alive, wrk load, slow-head 408, video seek, /status);
# redbot (HTTP lint of / and a video); the library's example (examples/hello.rs on the tap).
#
# Needs: iproute2, curl, coreutils, diffutils, gawk, python3 (the slow client, JSON checks),
# wrk (apt-get install wrk; installed here with apt-get if missing), node >= 18 + npm and
# chromium for the browser parts; redbot from PyPI, installed with pip into a venv
# ($E2E_VENV) on first use: that needs python3's venv module (Debian: apt-get install
# python3-venv). Without it the redbot checks are skipped, saying why.
#
# Env:
#   SMOLHTTPD_BIN  server binary (default target/release/smolhttpd, built if missing)
#   CHAT_BIN       chat client (default target/release/chat, built if missing)
#   HELLO_BIN      the library example (default target/release/examples/hello, built if missing)
#   E2E_OUT        artifacts: server log, screenshots, browser JSON, HARs, wrk output (default target/e2e)
#   E2E_VENV       Python venv for redbot (default target/e2e/venv)
#   E2E_SKIP_REDBOT=1  skip the redbot section
#   SERVER_ARGS    extra server flags, e.g. "--drop-chance 5" (word-split)
#   E2E_PCAP=1     also record the server's traffic to $E2E_OUT/server.pcap
#   MTU, HOST_CIDR passed to tap-up.sh
#   E2E_SKIP_BROWSER=1  skip the Chromium section; CHROMIUM  browser (default /usr/bin/chromium)
#   CURL_MAX_TIME  per-request curl limit in seconds (default 20; raise with --drop-chance)
#
# Output: one line per check, `ok   - what`, `FAIL - what` (with indented details) or
# `skip - what` (a tool could not be had; the reason indented), then `N passed, M failed`
# (`, K skipped` when some were). Exit status 0 only if nothing failed.
#
# Adding a section: write check functions that print details and return non-zero on
# failure (77: skipped, with the reason printed), then `section "name"` and
# `check "description" fn args...` before `finish`.
# shellcheck disable=SC2317,SC2016  # checks are called via check(); single-quoted code is for bash -c / node -e
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${E2E_OUT:-target/e2e}
NS=smolhttpd-e2e-$$
LISTEN_PID=
# ncurl (lib.sh): bounded, quiet but showing errors.
CURL_LIMITS=(--connect-timeout 5 --max-time "${CURL_MAX_TIME:-20}")

# ------------------------------------------------------------------ helpers

# raw_req TIMEOUT: send stdin as-is over a plain TCP connection to the server (bash
# /dev/tcp, no half-close) and print everything received until the server closes.
# Fails, saying so on stderr, if the server has not closed after TIMEOUT seconds.
raw_req() {
  local t=$1 rc
  in_ns timeout "$t" bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 111; cat >&3; cat <&3' \
    raw "$SERVER_IP" "$PORT"
  rc=$?
  case $rc in
    0) ;;
    124) echo "raw_req: connection still open after ${t}s (server did not close)" >&2 ;;
    111) echo "raw_req: could not connect to $SERVER_IP:$PORT" >&2 ;;
    *) echo "raw_req: exit status $rc" >&2 ;;
  esac
  return "$rc"
}

# header NAME FILE: value of the first header NAME in a dumped head (no CR, trimmed).
header() {
  tr -d '\r' <"$2" | awk -v n="$(echo "$1" | tr '[:upper:]' '[:lower:]')" '
    { i = index($0, ":"); if (i && tolower(substr($0, 1, i - 1)) == n) {
        v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v); print v; exit } }'
}
expected_type() {
  case $1 in
    *.html|*.htm) echo text/html ;;
    *.jpg|*.jpeg) echo image/jpeg ;;
    *.mp4) echo video/mp4 ;;
    *.pdf) echo application/pdf ;;
    *) echo "" ;;
  esac
}

# ------------------------------------------------------------------ checks

# GET URLPATH equals LOCALFILE: status 200, same bytes, content-type if known.
t_get_file() {
  local path=$1 file=$2 body="$TMPD/body" hdr="$TMPD/hdr" w code ctype want
  rm -f "$body" "$hdr"
  w=$(ncurl -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  code=$w
  if [ "$code" != 200 ]; then echo "status $code, want 200"; head -n 5 "$hdr"; return 1; fi
  if [ "$(sha "$body")" != "$(sha "$file")" ]; then
    echo "body differs from $file: got $(fsize "$body") bytes sha256 $(sha "$body"), want $(fsize "$file") bytes $(sha "$file")"
    return 1
  fi
  ctype=$(header content-type "$hdr"); want=$(expected_type "$file")
  if [ -n "$want" ] && [ "${ctype%%;*}" != "$want" ]; then
    echo "Content-Type '$ctype', want $want"; return 1
  fi
  return 0
}

t_head() {
  local path=$1 file=$2 hdr="$TMPD/hdr" body="$TMPD/body" code cl
  rm -f "$hdr" "$body"
  code=$(ncurl -I -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code, want 200"; cat "$hdr"; return 1; }
  cl=$(header content-length "$hdr")
  [ "$cl" = "$(fsize "$file")" ] || { echo "Content-Length '$cl', want $(fsize "$file")"; cat "$hdr"; return 1; }
}

# HEAD over a raw socket: the server must send the head and nothing after it.
t_head_no_body() {
  local path=$1 resp="$TMPD/raw" total headlen
  printf 'HEAD %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$SERVER_IP" | raw_req 5 >"$resp" || return 1
  total=$(fsize "$resp")
  [ "$total" -gt 0 ] || { echo "no response"; return 1; }
  head -n 1 "$resp" | grep -q '^HTTP/1\.[01] 200 ' || { echo "status line: $(head -n 1 "$resp")"; return 1; }
  headlen=$(sed -n '1,/^\r$/p' "$resp" | wc -c)
  [ "$total" -eq "$headlen" ] || { echo "$((total - headlen)) bytes after the head (head $headlen bytes)"; return 1; }
}

t_status() {
  local want=$1 hdr="$TMPD/hdr" code
  shift
  rm -f "$hdr"
  code=$(ncurl -o /dev/null -D "$hdr" -w '%{http_code}' "$@") || { echo "curl failed"; return 1; }
  [ "$code" = "$want" ] || { echo "status $code, want $want"; head -n 10 "$hdr"; return 1; }
}

t_404_body() {
  local body="$TMPD/body" code
  code=$(ncurl -o "$body" -w '%{http_code}' "$BASE/no/such/file") || { echo "curl failed"; return 1; }
  [ "$code" = 404 ] || { echo "status $code"; return 1; }
  cmp -s "$body" "$FS/404.html" || { echo "body is not $FS/404.html ($(fsize "$body") bytes):"; head -c 300 "$body"; return 1; }
}

t_405() {
  local hdr="$TMPD/hdr" code allow
  rm -f "$hdr"
  code=$(ncurl -o /dev/null -D "$hdr" -w '%{http_code}' -X POST --data x "$BASE/index.html") || { echo "curl failed"; return 1; }
  [ "$code" = 405 ] || { echo "status $code, want 405"; cat "$hdr"; return 1; }
  allow=$(header allow "$hdr")
  [ "$(echo "$allow" | tr -d ' ')" = "GET,HEAD" ] || { echo "Allow: '$allow', want 'GET, HEAD'"; cat "$hdr"; return 1; }
}

t_http09() {
  local path=$1 file=$2 resp="$TMPD/raw"
  printf 'GET %s\r\n' "$path" | raw_req 5 >"$resp" || { echo "received $(fsize "$resp") bytes"; return 1; }
  if ! cmp -s "$resp" "$file"; then
    echo "got $(fsize "$resp") bytes, want exactly the $(fsize "$file") bytes of $file; first bytes:"
    head -c 200 "$resp" | cat -v; echo
    return 1
  fi
}

t_redirect() {
  local path=$1 want=$2 hdr="$TMPD/hdr" code loc
  rm -f "$hdr"
  code=$(ncurl -o /dev/null -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 301 ] || { echo "status $code, want 301"; cat "$hdr"; return 1; }
  loc=$(header location "$hdr")
  case $loc in
    "$want"|"$BASE$want") ;;
    *) echo "Location '$loc', want '$want'"; return 1 ;;
  esac
}

t_http10() {
  local body="$TMPD/body" hdr="$TMPD/hdr" code
  code=$(ncurl --http1.0 -o "$body" -D "$hdr" -w '%{http_code}' "$BASE/") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code"; cat "$hdr"; return 1; }
  cmp -s "$body" "$FS/index.html" || { echo "body is not $FS/index.html"; return 1; }
}

t_logged() {
  local pat=$1
  grep -qF -- "$pat" "$LOG" || { echo "no line mentioning '$pat' in $LOG"; tail -n 5 "$LOG"; return 1; }
}

t_browser() {
  local rc
  in_ns env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 150 \
    node scripts/e2e/browser.mjs "$BASE/" "$OUT" >"$OUT/browser.json" 2>"$OUT/browser.err"
  rc=$?
  node -e '
    const fs = require("fs");
    let s; try { s = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { console.log("no JSON summary"); process.exit(0); }
    const i = s.images || [], v = s.videos || [];
    console.log(`info: status ${s.status}; images decoded ${i.filter(x => x.ok).length}/${i.length}; ` +
      `videos ready ${v.filter(x => x.ok).length}/${v.length} (readyState ${v.map(x => x.readyState).join(",")}); ${s.elapsedMs} ms`);
    for (const f of s.failures || []) console.log("failure: " + f);
  ' "$OUT/browser.json"
  if [ "$rc" -ne 0 ]; then
    echo "browser.mjs exit $rc (see $OUT/browser.json, $OUT/browser.err)"
    tail -n 5 "$OUT/browser.err"
    return 1
  fi
}

# ------------------------------------------------------------------ chat checks

# chat_cli ARGS...: the chat client inside the namespace, bounded.
chat_cli() { in_ns timeout 15 "$CHAT" "$SERVER_IP" "$PORT" "$@"; }

# t_chat_post NAME LINE...: pipe LINEs into `chat --name NAME`; exit 0 and nothing on stderr.
t_chat_post() {
  local name=$1 err="$TMPD/chat.err" rc
  shift
  printf '%s\n' "$@" | chat_cli --name "$name" 2>"$err"; rc=$?
  [ "$rc" -eq 0 ] || { echo "chat --name $name: exit $rc"; cat "$err"; return 1; }
  [ ! -s "$err" ] || { echo "chat --name $name wrote to stderr:"; cat "$err"; return 1; }
}

# t_lines_in_order FILE LINE...: every LINE occurs in FILE as a whole line, in this order.
t_lines_in_order() {
  local file=$1 want n=0 last=0 at
  shift
  for want in "$@"; do
    n=$((n + 1))
    at=$(grep -nxF -- "$want" "$file" | head -n 1 | cut -d: -f1)
    if [ -z "$at" ]; then echo "line $n missing: '$want'"; echo "--- $file:"; cat "$file"; return 1; fi
    if [ "$at" -le "$last" ]; then echo "line $n '$want' is out of order (line $at)"; echo "--- $file:"; cat "$file"; return 1; fi
    last=$at
  done
}

# t_chat_listen: beto's `chat --listen --for 8` (started in the background) exited 0 and
# printed every posted line in posting order; its output is the transcript.
t_chat_listen() {
  local rc=$1
  [ "$rc" = 0 ] || { echo "chat --listen --for 8: exit $rc"; cat "$OUT/chat-listen.err"; return 1; }
  t_lines_in_order "$OUT/chat-listen.txt" "${CHAT_LINES[@]}" || return 1
  sed 's/^/info: beto sees | /' "$OUT/chat-listen.txt"
}

t_chat_once() {
  local out="$TMPD/once" rc
  chat_cli --once >"$TMPD/once.all" 2>"$TMPD/once.err"; rc=$?
  [ "$rc" -eq 0 ] || { echo "chat --once: exit $rc"; cat "$TMPD/once.err"; return 1; }
  # The chat page check has the CLI post "eve: from the cli" too; it has its own check.
  grep -v '^eve: from the cli$' "$TMPD/once.all" >"$out"
  # Exactly the posted messages: the failed posts of the other checks left nothing behind.
  if [ "$(cat "$out")" != "$(printf '%s\n' "${CHAT_LINES[@]}")" ]; then
    echo "chat --once printed:"; cat "$out"; echo "--- want:"; printf '%s\n' "${CHAT_LINES[@]}"; return 1
  fi
}

# A 257-byte message: the client refuses it (exit 1) with the contract's words.
t_chat_too_long() {
  local err="$TMPD/long.err" rc text
  text=$(printf 'x%.0s' $(seq 1 257))
  printf '%s\n' "$text" | chat_cli --name ana >/dev/null 2>"$err"; rc=$?
  [ "$rc" -eq 1 ] || { echo "exit $rc, want 1"; cat "$err"; return 1; }
  grep -qF "message too long (max 256 bytes)" "$err" || { echo "stderr does not say 'message too long (max 256 bytes)':"; cat "$err"; return 1; }
}

# t_status_allow WANT_STATUS WANT_ALLOW CURL-ARGS...
t_status_allow() {
  local want=$1 want_allow=$2 hdr="$TMPD/hdr" code allow
  shift 2
  rm -f "$hdr"
  code=$(ncurl -o /dev/null -D "$hdr" -w '%{http_code}' "$@") || { echo "curl failed"; return 1; }
  [ "$code" = "$want" ] || { echo "status $code, want $want"; cat "$hdr"; return 1; }
  allow=$(header allow "$hdr")
  [ "$(echo "$allow" | tr -d ' ')" = "$(echo "$want_allow" | tr -d ' ')" ] ||
    { echo "Allow: '$allow', want '$want_allow'"; cat "$hdr"; return 1; }
}

t_chat_browser() {
  local rc expect
  expect=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps([a[i:i + 2] for i in range(0, len(a), 2)]))' \
    "${CHAT_BROWSER_EXPECT[@]}")
  in_ns env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 EXPECT_TEXTS="$expect" POST_NAME=dora POST_TEXT="from the browser" \
    CHAT_BIN="$CHAT" CHAT_SERVER="$SERVER_IP $PORT" \
    timeout 90 node scripts/e2e/chat.mjs "$BASE/chat.html" "$OUT" >"$OUT/chat.json" 2>"$OUT/chat.err"
  rc=$?
  python3 - "$OUT/chat.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    print("no JSON summary"); sys.exit(0)
print(f"info: ready={s.get('ready')}; {len(s.get('shown') or [])} messages shown; <script> in #log: "
      f"{s.get('scriptsInLog')}; dialogs: {len(s.get('dialogs') or [])}; posted from the page: {s.get('posted')}; "
      f"{s.get('elapsedMs')} ms")
print(f"info: mode={s.get('mode')}; polling requests: {s.get('pollRequests')}; CLI post shown on the page "
      f"{s.get('cliToPageMs')} ms after the CLI returned")
for f in s.get("failures") or []:
    print("failure: " + f)
PY
  if [ "$rc" -ne 0 ]; then
    echo "chat.mjs exit $rc (see $OUT/chat.json, $OUT/chat.err)"
    tail -n 5 "$OUT/chat.err"
    return 1
  fi
}

# ------------------------------------------------------------------ HTTP/1.1 checks

# GET -r 0-99: 206, the file's first 100 bytes, Content-Range bytes 0-99/SIZE.
t_range() {
  local path=$1 file=$2 body="$TMPD/body" hdr="$TMPD/hdr" code size cr
  size=$(fsize "$file"); rm -f "$body" "$hdr"
  code=$(ncurl -r 0-99 -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 206 ] || { echo "status $code, want 206"; cat "$hdr"; return 1; }
  [ "$(fsize "$body")" = 100 ] || { echo "got $(fsize "$body") bytes, want 100"; return 1; }
  head -c 100 "$file" | cmp -s - "$body" || { echo "the 100 bytes differ from the start of $file"; return 1; }
  cr=$(header content-range "$hdr")
  [ "$cr" = "bytes 0-99/$size" ] || { echo "Content-Range '$cr', want 'bytes 0-99/$size'"; cat "$hdr"; return 1; }
}

# GET -r SIZE-: 416 with Content-Range bytes */SIZE.
t_range_416() {
  local path=$1 file=$2 hdr="$TMPD/hdr" code size cr
  size=$(fsize "$file"); rm -f "$hdr"
  code=$(ncurl -r "$size-" -o /dev/null -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 416 ] || { echo "status $code, want 416"; cat "$hdr"; return 1; }
  cr=$(header content-range "$hdr")
  [ "$cr" = "bytes */$size" ] || { echo "Content-Range '$cr', want 'bytes */$size'"; cat "$hdr"; return 1; }
}

# curl --compressed: Content-Encoding gzip, Vary: Accept-Encoding, decoded body = the file.
t_gzip() {
  local path=$1 file=$2 body="$TMPD/body" hdr="$TMPD/hdr" code ce vary
  rm -f "$body" "$hdr"
  code=$(ncurl --compressed -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code, want 200"; cat "$hdr"; return 1; }
  ce=$(header content-encoding "$hdr"); vary=$(header vary "$hdr")
  [ "$ce" = gzip ] || { echo "Content-Encoding '$ce', want gzip"; cat "$hdr"; return 1; }
  echo "$vary" | grep -qi 'accept-encoding' || { echo "Vary '$vary' does not name Accept-Encoding"; cat "$hdr"; return 1; }
  cmp -s "$body" "$file" || { echo "decoded body ($(fsize "$body") bytes) differs from $file"; return 1; }
  echo "info: $(header content-length "$hdr") bytes on the wire for $(fsize "$file")"
}

# Without Accept-Encoding: no Content-Encoding, the file as is.
t_no_gzip() {
  local path=$1 file=$2 body="$TMPD/body" hdr="$TMPD/hdr" code ce
  rm -f "$body" "$hdr"
  code=$(ncurl -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code, want 200"; cat "$hdr"; return 1; }
  ce=$(header content-encoding "$hdr")
  [ -z "$ce" ] || { echo "Content-Encoding '$ce' without Accept-Encoding"; cat "$hdr"; return 1; }
  cmp -s "$body" "$file" || { echo "body differs from $file"; return 1; }
}

# If-None-Match with the ETag of a GET: 304, no body.
t_inm() {
  local path=$1 hdr="$TMPD/hdr" body="$TMPD/body" code etag
  rm -f "$hdr" "$body"
  ncurl -o /dev/null -D "$hdr" "$BASE$path" || { echo "curl failed"; return 1; }
  etag=$(header etag "$hdr")
  [ -n "$etag" ] || { echo "no ETag"; cat "$hdr"; return 1; }
  code=$(ncurl -H "If-None-Match: $etag" -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 304 ] || { echo "If-None-Match: $etag -> status $code, want 304"; cat "$hdr"; return 1; }
  [ ! -s "$body" ] || { echo "304 with a $(fsize "$body")-byte body"; return 1; }
}

# One curl, three URLs: all 200 over one connection.
t_keepalive() {
  local out="$TMPD/ka" conns codes
  ncurl -o /dev/null -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' \
    "$BASE/" "$BASE/img/car.jpeg" "$BASE/text/text.htm" >"$out" || { echo "curl failed"; cat "$out"; return 1; }
  codes=$(cut -d' ' -f1 "$out" | tr '\n' ' ')
  conns=$(awk '{ s += $2 } END { print s + 0 }' "$out")
  [ "$codes" = "200 200 200 " ] || { echo "statuses: $codes"; return 1; }
  [ "$conns" = 1 ] || { echo "$conns connections for 3 requests, want 1 (per request: $(cut -d' ' -f2 "$out" | tr '\n' ' '))"; return 1; }
}

# The slow-head experiment (run once by the section): results in $TMPD/slow.*.
run_slow_head() {
  rm -f "$TMPD/slow.started" "$TMPD/slow.out" "$TMPD/slow.curl"
  in_ns timeout 20 python3 scripts/e2e/slow_head.py "$SERVER_IP" "$PORT" "$TMPD/slow.started" \
    >"$TMPD/slow.out" 2>"$TMPD/slow.err" &
  local pid=$!
  for _ in $(seq 1 100); do [ -f "$TMPD/slow.started" ] && break; sleep 0.05; done
  if [ -f "$TMPD/slow.started" ]; then
    sleep 1
    ncurl -o "$TMPD/slow.body" -w '%{http_code} %{time_total}\n' "$BASE/img/car.jpeg" >"$TMPD/slow.curl" 2>&1
  else
    echo "slow client did not start within 5 s" >"$TMPD/slow.curl"
  fi
  wait "$pid"
  echo "exit $?" >>"$TMPD/slow.err"
}

t_slow_408() {
  local line status after
  line=$(cat "$TMPD/slow.out")
  status=$(sed -n 's/^status=\([^ ]*\).*/\1/p' "$TMPD/slow.out")
  after=$(sed -n 's/.* after=\([0-9.]*\).*/\1/p' "$TMPD/slow.out")
  [ "$status" = 408 ] || { echo "slow client: ${line:-no output}"; cat "$TMPD/slow.err"; return 1; }
  awk -v a="$after" 'BEGIN { exit !(a >= 4.5 && a <= 7) }' ||
    { echo "408 after ${after}s, want 4.5-7 s: $line"; return 1; }
  echo "info: $line"
}

t_slow_other() {
  local code t
  read -r code t <"$TMPD/slow.curl"
  [ "$code" = 200 ] || { echo "curl: $(cat "$TMPD/slow.curl")"; return 1; }
  cmp -s "$TMPD/slow.body" "$FS/img/car.jpeg" || { echo "body differs from $FS/img/car.jpeg"; return 1; }
  awk -v t="$t" 'BEGIN { exit !(t < 1) }' || { echo "took ${t}s, want < 1 s"; return 1; }
  echo "info: 200 in ${t}s"
}

# wrk (run once by the section into $OUT/wrk.txt).
t_wrk_errors() {
  local f="$OUT/wrk.txt"
  [ -s "$f" ] || { echo "no wrk output"; return 1; }
  if grep -q 'Socket errors:' "$f" && ! grep -qE 'Socket errors: connect 0, read 0, write 0, timeout 0$' "$f"; then
    grep 'Socket errors:' "$f"; grep 'requests in' "$f"; return 1
  fi
  if grep -q 'Non-2xx or 3xx responses' "$f"; then grep 'Non-2xx or 3xx responses' "$f"; return 1; fi
}

t_wrk_requests() {
  local f="$OUT/wrk.txt" n
  n=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$f")
  if [ -z "$n" ] || [ "$n" -eq 0 ]; then echo "no requests completed:"; cat "$f"; return 1; fi
  echo "info: $(sed -n 's/^ *\([0-9]* requests in [^,]*\), \(.*\)/\1, \2/p' "$f"); $(grep '^Requests/sec' "$f" | tr -s ' '); $(grep '^Transfer/sec' "$f" | tr -s ' ')"
  echo "info: latency $(awk '/Latency/ { print "avg " $2 ", stdev " $3 ", max " $4 }' "$f")"
}

t_seek() {
  local rc
  in_ns env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 90 \
    node scripts/e2e/seek.mjs "$BASE/" "$OUT" /video/Planeta.mp4 >"$OUT/seek.json" 2>"$OUT/seek.err"
  rc=$?
  python3 - "$OUT/seek.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    print("no JSON summary"); sys.exit(0)
a = s.get("after") or {}
print(f"info: seeked to {a.get('currentTime')} s in {s.get('seekMs')} ms, readyState {a.get('readyState')}; "
      f"ranges asked: {', '.join(str(r.get('range')) + ' -> ' + str(r.get('status')) for r in s.get('requests') or [])}")
for f in s.get("failures") or []:
    print("failure: " + f)
PY
  if [ "$rc" -ne 0 ]; then
    echo "seek.mjs exit $rc (see $OUT/seek.json, $OUT/seek.err)"
    tail -n 5 "$OUT/seek.err"
    return 1
  fi
}

# t_options_star: `OPTIONS * HTTP/1.1` is 200 with an Allow header.
t_options_star() {
  local code allow
  code=$(ncurl -o /dev/null -D "$TMPD/opt.h" -w '%{http_code}' -X OPTIONS --request-target '*' "$BASE/") ||
    { echo "curl failed"; return 1; }
  allow=$(header allow "$TMPD/opt.h")
  echo "info: $code, Allow: $allow"
  [ "$code" = 200 ] && [ -n "$allow" ]
}

# t_post_logged: a POST /chat's access-log line carries the bytes of its 201 body.
t_post_logged() {
  local size line
  size=$(ncurl -o /dev/null -w '%{size_download}' --data-urlencode name=logger \
    --data-urlencode "text=counting bytes" "$BASE/chat") || { echo "curl failed"; return 1; }
  for _ in 1 2 3 4 5; do
    line=$(grep -E " POST /chat 201 $size " "$LOG" | tail -n 1)
    [ -n "$line" ] && break
    sleep 0.2
  done
  [ -n "$line" ] || { echo "no 'POST /chat 201 $size' line; the last POST lines:"; grep 'POST /chat' "$LOG" | tail -n 2; return 1; }
  echo "info: body $size bytes; log: ${line#*] }"
  [ "$size" -gt 0 ]
}

t_ims() {
  local hdr="$TMPD/ims.hdr" lm code
  ncurl -o /dev/null -D "$hdr" "$BASE$1" || { echo "curl failed"; return 1; }
  lm=$(header last-modified "$hdr")
  [ -n "$lm" ] || { echo "no Last-Modified"; cat "$hdr"; return 1; }
  code=$(ncurl -o "$TMPD/ims.body" -w '%{http_code}' -H "If-Modified-Since: $lm" "$BASE$1") || return 1
  [ "$code" = 304 ] && [ ! -s "$TMPD/ims.body" ] || { echo "status $code, $(fsize "$TMPD/ims.body") body bytes"; return 1; }
  echo "info: Last-Modified: $lm"
}

t_wget_n() {
  local dir="$TMPD/wget" urls="$TMPD/urls" second
  command -v wget >/dev/null || { echo "wget not installed"; return 77; }
  mkdir -p "$dir"
  find "$FS" -type f | sort | sed "s|^$FS|$BASE|" >"$urls"
  (cd "$dir" && in_ns timeout 60 wget -N -nv -x -nH -i "$urls") >"$TMPD/wget1.log" 2>&1 ||
    { echo "first wget failed:"; tail -n 5 "$TMPD/wget1.log"; return 1; }
  second=$( (cd "$dir" && in_ns timeout 60 wget -N -x -nH -i "$urls") 2>&1) ||
    { echo "second wget failed:"; echo "$second" | tail -n 5; return 1; }
  if echo "$second" | grep -q 'Saving to'; then
    echo "the second run downloaded:"; echo "$second" | grep 'Saving to' | head -n 5; return 1
  fi
  echo "info: second run: $(echo "$second" | grep -c '304 Not Modified') of $(wc -l <"$urls") answered 304 Not Modified"
  diff -r "$FS" "$dir/" >/dev/null || { echo "the mirror differs from $FS"; return 1; }
}

t_hello() {
  local body
  body=$(ncurl -f "$BASE/hello") || { echo "curl failed"; return 1; }
  case $body in *"hello from a handler"*) ;; *) echo "body: $body"; return 1 ;; esac
}

t_echo() {
  local sent="$TMPD/echo.in" got="$TMPD/echo.out" code
  head -c 1000 /dev/urandom >"$sent"
  code=$(ncurl -o "$got" -w '%{http_code}' --data-binary "@$sent" "$BASE/echo") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code, want 200"; return 1; }
  cmp -s "$sent" "$got" || { echo "echoed $(fsize "$got") bytes, not the 1000 sent"; return 1; }
}

t_push() {
  local out
  out=$(in_ns timeout 30 python3 scripts/e2e/listeners.py push "$SERVER_IP" "$PORT" 5 10) || { echo "$out"; return 1; }
  echo "info: $out"
  python3 -c 'import sys; m = float(sys.argv[1]); sys.exit(not m <= 100)' "$(echo "$out" | sed -n 's/.*max_ms=\([0-9.]*\).*/\1/p')"
}

t_push_crowd() {
  local out rc
  out=$(in_ns timeout 40 python3 scripts/e2e/listeners.py crowd "$SERVER_IP" "$PORT" 10 8); rc=$?
  echo "$out" | sed 's/^/info: /'
  return $rc
}

t_status_json() {
  local out="$TMPD/status.json" code
  code=$(ncurl -o "$out" -w '%{http_code}' "$BASE/status") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code, want 200"; return 1; }
  python3 - "$out" <<'PY'
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
try:
    d = json.loads(raw)
except ValueError as e:
    print(f"not JSON ({e}): {raw[:300]}"); sys.exit(1)
slots = d.get("slots")
if not isinstance(slots, list) or len(slots) != 10:
    print(f"want 10 slots, got {slots!r}"); sys.exit(1)
for i, s in enumerate(slots):
    if not isinstance(s, dict) or "state" not in s or "served" not in s:
        print(f"slot {i} lacks state/served: {s!r}"); sys.exit(1)
missing = [k for k in ("requests", "bytes", "client_errors", "server_errors", "timeouts", "held_off") if k not in d]
if missing:
    print(f"missing fields: {missing}"); sys.exit(1)
print("info: " + ", ".join(f"{k} {d[k]}" for k in d if k != "slots"))
print("info: served per slot: " + " ".join(str(s["served"]) for s in slots))
PY
}

# ------------------------------------------------------------------ redbot

# setup_redbot: sets REDBOT to a working redbot, or REDBOT_WHY to why there is none.
# Uses a redbot on PATH, else installs it from PyPI into a venv ($E2E_VENV) once.
REDBOT=
REDBOT_WHY=
setup_redbot() {
  local venv=${E2E_VENV:-target/e2e/venv} fresh=0
  if command -v redbot >/dev/null 2>&1 && redbot --help >/dev/null 2>&1; then REDBOT=$(command -v redbot); return; fi
  if [ ! -x "$venv/bin/redbot" ]; then
    say "installing redbot from PyPI into $venv (python3 -m venv + pip, once)"
    [ -e "$venv" ] || fresh=1
    # Only a venv made here is removed again on failure.
    if ! timeout 120 python3 -m venv "$venv" >"$TMPD/venv.log" 2>&1; then
      REDBOT_WHY="python3 -m venv $venv failed (Debian: apt-get install python3-venv): $(tail -n 1 "$TMPD/venv.log")"
      [ "$fresh" = 1 ] && rm -rf "$venv"
      return
    fi
    if ! timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check redbot httptools httplint >"$TMPD/pip.log" 2>&1; then
      REDBOT_WHY="pip install redbot failed: $(grep -m1 -i 'error' "$TMPD/pip.log" || tail -n 1 "$TMPD/pip.log")"
      [ "$fresh" = 1 ] && rm -rf "$venv"
      return
    fi
  fi
  if "$venv/bin/redbot" --help >/dev/null 2>&1; then
    REDBOT=$(realpath "$venv/bin/redbot")
  else
    REDBOT_WHY="$venv/bin/redbot --help fails (remove $venv to reinstall)"
  fi
}

# t_strict: raw responses of every kind through llhttp (httptools, strict) and httplint, with
# their own asserts (416 has */len, 405 has Allow, 206's Content-Range...): scripts/e2e/strict.py.
t_strict() {
  local venv=${E2E_VENV:-target/e2e/venv}
  if [ -z "$REDBOT" ]; then echo "skip: no Python venv: $REDBOT_WHY"; return 77; fi
  if ! "$venv/bin/python" -c 'import httptools, httplint' 2>/dev/null; then
    timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check httptools httplint \
      >"$TMPD/pip-strict.log" 2>&1 || { echo "skip: pip install httptools httplint failed"; return 77; }
  fi
  in_ns timeout 60 "$venv/bin/python" scripts/e2e/strict.py "$SERVER_IP" "$PORT" "$FS" >"$TMPD/strict.out" 2>&1
  local rc=$?
  grep -v '^ok ' "$TMPD/strict.out"
  return "$rc"
}

# t_redbot URL NAME [redbot flags]: HAR to $OUT/redbot-NAME.har; no BAD note.
t_redbot() {
  local url=$1 name=$2 har
  shift 2
  if [ -z "$REDBOT" ]; then echo "skip: redbot unavailable: $REDBOT_WHY"; return 77; fi
  har="$OUT/redbot-$name.har"
  in_ns timeout 60 "$REDBOT" -o har "$@" "$url" >"$har" 2>"$TMPD/redbot.err" ||
    { echo "redbot exit $?"; tail -n 5 "$TMPD/redbot.err"; return 1; }
  python3 scripts/e2e/har_notes.py "$har"
}

# ------------------------------------------------------------------ setup / teardown

on_fail() { echo "--- last 20 lines of $LOG"; tail -n 20 "$LOG"; }

need_root "network namespace + tap"

need ip iproute2
need curl curl
need sha256sum coreutils
need timeout coreutils
need cmp diffutils
need awk gawk
need python3 python3
# wrk drives the load check; CI installs it, a developer's machine may not have it yet.
if ! command -v wrk >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "'wrk' not found: install wrk (https://github.com/wg/wrk)"
  say "wrk not found: installing it (apt-get install -y -qq wrk)"
  { timeout 300 apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 ||
    { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends wrk >/dev/null; }; } ||
    die "could not install wrk: apt-get update && apt-get install wrk"
fi
if [ "${E2E_SKIP_BROWSER:-0}" != 1 ]; then
  need_browser
fi

release_bins "smolhttpd, chat"
CHAT=$CHAT_BIN
HELLO_BIN=${HELLO_BIN:-target/release/examples/hello}
if [ ! -x "$HELLO_BIN" ]; then
  say "building examples/hello.rs"
  cargo build --release --example hello || die "cargo build --example hello failed"
fi
HELLO_BIN=$(realpath "$HELLO_BIN")
# stale BINARY SOURCES...: say so when a default binary is older than its sources.
stale() {
  local b=${1#"$ROOT/"}
  shift
  case $b in target/*)
    if [ -n "$(find "$@" -newer "$b" -print -quit 2>/dev/null)" ]; then
      say "note: $b is older than the sources (testing it as is; rebuild with cargo build --release)"
    fi ;;
  esac
}
stale "$BIN" src build.rs Cargo.toml fs_image
stale "$CHAT" src/shell/chat.rs Cargo.toml

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/server.log
set_traps
make_tap_ns show

# shellcheck disable=SC2206
EXTRA=(${SERVER_ARGS:-})
[ "${E2E_PCAP:-0}" = 1 ] && EXTRA+=(--pcap "$OUT/server.pcap")
say "server: $BIN --tap $TAP${EXTRA[*]:+ ${EXTRA[*]}} (namespace $NS, log $LOG)"
start_server "${EXTRA[@]}"
server_up "$BASE/" 50 10 || exit 1   # up to ~10 s

# ------------------------------------------------------------------ static files

section "static files"
while IFS= read -r -d '' f; do
  rel=${f#"$FS"}
  check "GET $rel: 200, same $(fsize "$f") bytes as $f" t_get_file "$rel" "$f"
done < <(find "$FS" -type f -print0 | sort -z)
check "GET / serves $FS/index.html" t_get_file / "$FS/index.html"
check "GET /text/ serves $FS/text/index.html" t_get_file /text/ "$FS/text/index.html"
check "HEAD /img/car.jpeg: 200, Content-Length $(fsize "$FS/img/car.jpeg")" t_head /img/car.jpeg "$FS/img/car.jpeg"
check "HEAD /img/car.jpeg sends no body (raw socket)" t_head_no_body /img/car.jpeg
check "GET /no/such/file: 404" t_status 404 "$BASE/no/such/file"
check "404 body is $FS/404.html" t_404_body
check "POST /index.html: 405 with Allow: GET, HEAD" t_405
check "HTTP/0.9 GET /text/text.htm: exactly the file's bytes, no status line" t_http09 /text/text.htm "$FS/text/text.htm"
check "GET /img: 301 to /img/" t_redirect /img /img/
check "GET / with --http1.0: 200, index.html" t_http10
check "server logged the requests (one line mentions /no/such/file)" t_logged /no/such/file

# ------------------------------------------------------------------ browser

if [ "${E2E_SKIP_BROWSER:-0}" != 1 ]; then
  section "browser (headless Chromium via playwright-core)"
  check "home page: every <img> decoded, every <video> readyState >= 2, screenshot $OUT/home.png" t_browser
fi

# ------------------------------------------------------------------ chat (issue 4)

section "chat: CLI clients and the chat page"
# Lines as `chat --listen/--once` print them, in posting order.
CHAT_LINES=("ana: hola a todos" "ana: <script>alert(1)</script> hola" "carla: hola ana, ¿qué tal?" "dora: from the browser")
CHAT_BROWSER_EXPECT=(ana "hola a todos" ana "<script>alert(1)</script> hola" carla "hola ana, ¿qué tal?")
# beto listens for 8 s while the others post (started directly, so $! is its own PID).
ip netns exec "$NS" timeout 20 "$CHAT" "$SERVER_IP" "$PORT" --name beto --listen --for 8 \
  >"$OUT/chat-listen.txt" 2>"$OUT/chat-listen.err" &
LISTEN_PID=$!
check "chat --name ana: pipes two lines (one is <script>alert(1)</script> hola), exit 0" \
  t_chat_post ana "hola a todos" "<script>alert(1)</script> hola"
check "chat --name carla: posts a reply, exit 0" t_chat_post carla "hola ana, ¿qué tal?"
if [ "${E2E_SKIP_BROWSER:-0}" != 1 ]; then
  check "chat page: shows ana's <script> line as text (no <script> element, no dialog), posts 'dora: from the browser' with Send, screenshot $OUT/chat.png" \
    t_chat_browser
else
  # Without a browser dora posts with the form encoding the page uses.
  check "POST /chat as dora (browser skipped): 201" t_status 201 --data-urlencode name=dora \
    --data-urlencode "text=from the browser" "$BASE/chat"
fi
check "chat: a 257-byte message exits 1 with 'message too long (max 256 bytes)'" t_chat_too_long
check "POST /chat with Content-Type: text/plain: 415" t_status 415 -H 'Content-Type: text/plain' \
  --data 'name=eve&text=plain' "$BASE/chat"
check "GET /chat?since=abc: 400" t_status 400 "$BASE/chat?since=abc"
check "PUT /chat: 405 with Allow: GET, POST" t_status_allow 405 "GET, POST" -X PUT "$BASE/chat"
check "chat --once: exactly the 4 posted messages, in order" t_chat_once
# beto's listener ends by itself after 8 s (timeout 20 bounds it).
wait "$LISTEN_PID"; listen_rc=$?; LISTEN_PID=
check "chat --listen --for 8 (beto): exit 0, saw ana, carla and dora in posting order" t_chat_listen "$listen_rc"
check "POST /chat: the access log line shows the 201 body's bytes" t_post_logged

# ------------------------------------------------------------------ chat push

section "chat push: /chat/events listeners (python, reconnecting like EventSource)"
check "5 listeners: a POST reaches each within 100 ms" t_push
check "10 listeners and posts every 0.5 s: a visitor's GET / within 2 s; each listener has every message exactly once" t_push_crowd

# ------------------------------------------------------------------ HTTP/1.1 (issue 5)

section "HTTP/1.1: ranges, gzip, 304, keep-alive, load, deadlines, seeking, /status"
MP4=$FS/video/Planeta.mp4
check "GET -r 0-99 /video/Planeta.mp4: 206, first 100 bytes, Content-Range bytes 0-99/$(fsize "$MP4")" \
  t_range /video/Planeta.mp4 "$MP4"
check "GET -r $(fsize "$MP4")- /video/Planeta.mp4: 416, Content-Range bytes */$(fsize "$MP4")" \
  t_range_416 /video/Planeta.mp4 "$MP4"
check "GET / --compressed: Content-Encoding gzip, Vary, decodes to $FS/index.html" t_gzip / "$FS/index.html"
check "GET / without Accept-Encoding: no Content-Encoding, $FS/index.html as is" t_no_gzip / "$FS/index.html"
check "GET / with If-None-Match: <its ETag>: 304, no body" t_inm /
check "keep-alive: one curl, 3 URLs, 1 connection" t_keepalive
check "GET / with If-Modified-Since: its Last-Modified: 304, no body" t_ims /
check "wget -N of every file twice: the second run downloads nothing" t_wget_n
check "OPTIONS * HTTP/1.1: 200 with Allow" t_options_star
say "slow client: one head byte a second (~6 s)"
run_slow_head
check "slow head (1 byte/s): 408 between 4.5 and 7 s after its first byte" t_slow_408
check "GET /img/car.jpeg 1 s into the slow head: 200 in < 1 s" t_slow_other
if [ "${E2E_SKIP_BROWSER:-0}" != 1 ]; then
  check "Chromium: seek /video/Planeta.mp4 to 5 s: seeked, readyState >= 2, Range bytes=N- (N > 0)" t_seek
fi
say "wrk -t2 -c50 -d3s $BASE/index.html (50 connections for 10 slots)"
in_ns timeout 20 wrk -t2 -c50 -d3s "$BASE/index.html" >"$OUT/wrk.txt" 2>&1
check "wrk -t2 -c50 -d3s: no socket errors, no non-2xx" t_wrk_errors
check "wrk -t2 -c50 -d3s: requests completed" t_wrk_requests
check "GET /status: JSON with 10 slots and the counters" t_status_json

# ------------------------------------------------------------------ redbot

if [ "${E2E_SKIP_REDBOT:-0}" != 1 ]; then
  section "redbot (HTTP lint; BAD notes fail)"
  setup_redbot
  check "redbot $BASE/ (and the page's assets): no BAD notes" t_redbot "$BASE/" home -a
  check "redbot $BASE/video/Flores.mp4: no BAD notes" t_redbot "$BASE/video/Flores.mp4" flores
  check "strict parser (llhttp) and httplint on raw 200/206/301/304/4xx/5xx responses" t_strict
fi

# ------------------------------------------------------------------ offload (issue 15)

# every_file NS: GET every file of the image from inside NS; each must be 200 and byte-exact.
# Prints the file count and bytes.
every_file() {
  local ns=$1 f rel n=0 bytes=0 code
  while IFS= read -r -d '' f; do
    rel=${f#"$FS"}
    code=$(ns_curl "$ns" -o "$TMPD/ef" -w '%{http_code}' "$BASE$rel") || { echo "GET $rel: curl failed"; return 1; }
    if [ "$code" != 200 ] || ! cmp -s "$TMPD/ef" "$f"; then
      echo "GET $rel: status $code, $(fsize "$TMPD/ef") bytes, want 200 and the $(fsize "$f") bytes of $f"; return 1
    fi
    n=$((n + 1)); bytes=$((bytes + $(fsize "$f")))
  done < <(find "$FS" -type f -print0 | sort -z)
  echo "info: $n files, $bytes bytes"
}

# A second namespace routed through the tap's host side (setup_routed, lib.sh).
NS2=${NS}-r
veth_tx() { ip -n "$NS" -s link show vr0 | awk '/TX:/ {getline; print $1, $2; exit}'; }

# t_routed: every file through the router, byte-exact, and the routed veth carried packets of
# at most MTU size (packets >= bytes / 1460: the kernel segmented).
t_routed() {
  local out b0 p0 b1 p1 pk by
  read -r b0 p0 <<<"$(veth_tx)"
  out=$(every_file "$NS2") || { echo "$out"; return 1; }
  read -r b1 p1 <<<"$(veth_tx)"
  echo "$out"
  by=$((b1 - b0)); pk=$((p1 - p0))
  echo "info: the routed veth sent $pk packets, $by bytes: $((pk > 0 ? by / pk : 0)) bytes a packet on average"
  if [ "$SOFT_GSO" != 1 ]; then
    echo "info: ethtool missing (apt-get install ethtool): segmentation on the veth not forced, not judged"
  elif [ "$pk" -lt $((by / 1514)) ]; then
    echo "fewer packets than MTU-sized frames would need: not segmented"; return 1
  fi
}

t_start_line() { # t_start_line WANT_OFFLOAD(1/0)
  local line
  line=$(grep -m1 'serving http' "$LOG")
  echo "info: $line"
  if [ "$1" = 1 ]; then [[ $line == *"(mtu 1500, offload)"* ]] || { echo "want '(mtu 1500, offload)'"; return 1; }
  else [[ $line == *"(mtu 1500)"* ]] || { echo "want '(mtu 1500)' without offload"; return 1; }; fi
}

section "offload: large segments cut by the kernel; a routed client; --no-offload"
check "start line: tap0 (mtu 1500, offload)" t_start_line 1
ROUTED=0
if setup_routed; then
  ROUTED=1
  check "a client in a second namespace, routed at MTU 1500: every file byte-exact, segmented" t_routed
else
  report "routed namespace set up" 1 "ip link/addr/route failed"
fi

# ------------------------------------------------------------------ IPv6 (issue 25)

# The same server (offload on) at its IPv6 addresses: with6 CMD... runs CMD with BASE and
# SERVER_IP pointing at fd69::1 (curl takes [fd69::1] in a URL as an address, not a glob).
SERVER_IP6=fd69::1
with6() {
  local base=$BASE ip=$SERVER_IP rc
  BASE="http://[$SERVER_IP6]"; SERVER_IP=$SERVER_IP6
  "$@"; rc=$?
  BASE=$base; SERVER_IP=$ip
  return "$rc"
}
t_start_line6() {
  grep -qF "and http://[$SERVER_IP6]:$PORT/ (IPv6; link-local fe80::ff:fe00:1)" "$LOG" ||
    { echo "no IPv6 line in the start lines:"; head -n 3 "$LOG"; return 1; }
}
t_wget6() {
  command -v wget >/dev/null || { echo "wget not installed"; return 77; }
  rm -f "$TMPD/w6"
  in_ns timeout 60 wget -q -6 -O "$TMPD/w6" "$BASE/video/Planeta.mp4" || { echo "wget failed"; return 1; }
  cmp -s "$TMPD/w6" "$MP4" || { echo "wget's copy differs from $MP4"; return 1; }
}
section "IPv6: the same server at http://[$SERVER_IP6]/ (offload on) and its link-local address"
check "start line: and http://[$SERVER_IP6]:$PORT/ (IPv6; link-local fe80::ff:fe00:1)" t_start_line6
check "IPv6: GET / serves $FS/index.html" with6 t_get_file / "$FS/index.html"
check "IPv6: every file byte-exact" with6 every_file "$NS"
check "IPv6: GET -r 0-99 /video/Planeta.mp4: 206" with6 t_status 206 -r 0-99 "http://[$SERVER_IP6]/video/Planeta.mp4"
check "IPv6: link-local http://[fe80::ff:fe00:1%$TAP]/: 200" t_status 200 "http://[fe80::ff:fe00:1%25$TAP]/"
check "IPv6: wget -6 of /video/Planeta.mp4: byte-exact" with6 t_wget6
check "IPv6: the access log writes the client as [fd69::100]:PORT" t_logged "[fd69::100]:"
if [ "${E2E_SKIP_BROWSER:-0}" != 1 ]; then
  check "IPv6 in Chromium: home page, every <img> decoded, every <video> readyState >= 2" with6 t_browser
  check "IPv6 in Chromium: seek in /video/Planeta.mp4" with6 t_seek
  check "IPv6 in Chromium: the chat page follows its event stream and posts" with6 t_chat_browser
fi
if [ "$ROUTED" = 1 ]; then
  check "IPv6: a client in a second namespace, routed at MTU 1500: every file byte-exact, segmented" with6 t_routed
fi
stop_server
LOG=$OUT/server-no-offload.log
say "server: $BIN --tap $TAP --no-offload (log $LOG)"
start_server --no-offload
if server_up "$BASE/" 50 10; then
  check "--no-offload: start line tap0 (mtu 1500)" t_start_line 0
  check "--no-offload: every file byte-exact" every_file "$NS"
  check "--no-offload: the routed client gets every file byte-exact" t_routed
  check "--no-offload: the routed client gets every file byte-exact over IPv6" with6 t_routed
else
  report "--no-offload: server came up" 1 "$(tail -n 5 "$LOG")"
fi

# ------------------------------------------------------------------ the library's example

section "examples/hello.rs: your own handlers beside the image, on the same tap"
stop_server
say "example: $HELLO_BIN --tap $TAP (log $OUT/hello.log)"
RUST_LOG=info ip netns exec "$NS" "$HELLO_BIN" --tap "$TAP" >"$OUT/hello.log" 2>&1 &
SERVER_PID=$!
LOG=$OUT/hello.log
if server_up "$BASE/hello" 50 10; then
  check "hello: GET /hello: 200, text containing 'hello from a handler'" t_hello
  check "hello: POST /echo with 1,000 random bytes: 200, the same bytes back" t_echo
  check "hello: GET / still serves $FS/index.html" t_get_file / "$FS/index.html"
  check "hello: GET /echo: 405 with Allow: POST" t_status_allow 405 "POST" "$BASE/echo"
  check "hello: GET /hello over IPv6 (http://[$SERVER_IP6]/hello)" with6 t_hello
  check "hello: still running, no panic" t_no_panic
else
  report "hello: example came up" 1 "$(tail -n 5 "$OUT/hello.log")"
fi

echo
finish
