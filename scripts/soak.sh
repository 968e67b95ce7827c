#!/usr/bin/env bash
# soak.sh MINUTES — mixed load on the real smolhttpd binary for MINUTES, watching its memory.
#
# Usage (as root):  sudo scripts/soak.sh 1     (CI: about 1.5 minutes in all)
#                   sudo scripts/soak.sh 30    (the long soak)
#
# Everything happens inside a network namespace this script creates and deletes
# (smolhttpd-soak-PID): the tap, the server and every client. No traffic leaves that
# namespace. The load stops by itself after MINUTES; every loop is bounded in count and time.
#
# Load, all at once for the whole run:
#   - wrk on /index.html and wrk on /img/car.jpeg (keep-alive; SOAK_WRK_CONNS connections
#     each, default 3), with scripts/soak/count.lua counting non-2xx and short bodies;
#   - a chat loop: POST /chat (201) then GET /chat?since=N (200, JSON, next moves on), with
#     every 10th round done by the `chat` CLI instead of curl;
#   - a range loop: curl -r on /video/Planeta.mp4 (206, bytes equal to the file's slice).
# Peak: 2 x SOAK_WRK_CONNS + 2 connections, within the server's 10 slots. (With more, new
# clients are held off and keep-alive connections are closed between requests to make room:
# with SOAK_WRK_CONNS=5 wrk then opened one connection per request at ~40% of the throughput,
# still without errors.)
# The server's VmRSS is sampled every second into $SOAK_OUT/rss.csv (seconds,rss_kb).
#
# Passes when: wrk saw no socket errors (connect, read, write, timeout), no non-2xx and no short
# body; every curl and chat command exited 0 with the expected status and bytes; RSS after
# the load is within 5% or 256 KB of RSS after the 10 s warm-up; and a final probe of 10
# parallel curls all succeed.
#
# Env:
#   SMOLHTTPD_BIN, CHAT_BIN  binaries (default target/release/{smolhttpd,chat}, built if missing)
#   SOAK_OUT         artifacts: rss.csv, server.log, wrk outputs (default target/soak)
#   SOAK_WRK_CONNS   connections per wrk (default 4)
#   SOAK_SECONDS     run for this many seconds instead of MINUTES (testing the script)
#   RUST_LOG         server log level (default warn: at info every request is a line, which
#                    is gigabytes in a long soak)
#   MTU, HOST_CIDR   passed to tap-up.sh
#
# Output: the figures, one line per check (`ok   - what` / `FAIL - what`), then
# `N passed, M failed`. Exit status 0 only if nothing failed.
# Needs (Debian packages): iproute2, curl, wrk, jq, coreutils.
# shellcheck disable=SC2317,SC2015  # checks are called via check(); `[ a ] && [ b ] || fail` is meant
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${SOAK_OUT:-target/soak}
NS=smolhttpd-soak-$$
WRK_CONNS=${SOAK_WRK_CONNS:-4}
WARMUP=10
VIDEO=/video/Planeta.mp4
usage() { echo "usage: $0 MINUTES   (a whole number, 1..1440)" >&2; exit 2; }

if [ -n "${SOAK_SECONDS:-}" ]; then
  case $SOAK_SECONDS in ''|*[!0-9]*) die "SOAK_SECONDS must be a whole number" ;; esac
  SECS=$SOAK_SECONDS
else
  [ $# -eq 1 ] || usage
  case $1 in ''|*[!0-9]*) usage ;; esac
  [ "$1" -ge 1 ] && [ "$1" -le 1440 ] || usage
  SECS=$(($1 * 60))
fi
[ "$SECS" -ge $((WARMUP + 10)) ] || die "run at least $((WARMUP + 10)) s (warm-up is $WARMUP s)"
case $WRK_CONNS in ''|*[!0-9]*) die "SOAK_WRK_CONNS must be a whole number" ;; esac
[ "$WRK_CONNS" -ge 1 ] && [ "$WRK_CONNS" -le 8 ] || die "SOAK_WRK_CONNS must be 1..8"

# ------------------------------------------------------------------ helpers

CURL_LIMITS=(--retry 0 --connect-timeout 10 --max-time 30)   # for ncurl (lib.sh)
now_s() { date +%s; }

# ------------------------------------------------------------------ load generators
# Each runs until the epoch second $END (and at most a fixed number of rounds), then writes
# its tallies as KEY=VALUE lines; failures are described in its .err file (first ones only).

chat_loop() {
  local d=$1 i=0 since=0 posts=0 polls=0 bad=0 code next rc
  local body=$d/chat.body
  while [ "$(now_s)" -lt "$END" ] && [ "$i" -lt $((SECS * 100)) ]; do
    i=$((i + 1))
    if [ $((i % 10)) -eq 0 ]; then
      # The CLI client: post one line, then print all kept messages.
      if echo "soak round $i via chat" | in_ns timeout 20 "$CHAT_BIN" "$SERVER_IP" "$PORT" --name soak >/dev/null 2>>"$d/chat.err"; then
        posts=$((posts + 1))
      else
        rc=$?; bad=$((bad + 1)); echo "round $i: chat post exit $rc" >>"$d/chat.err"
      fi
      if in_ns timeout 20 "$CHAT_BIN" "$SERVER_IP" "$PORT" --once >/dev/null 2>>"$d/chat.err"; then
        polls=$((polls + 1))
      else
        rc=$?; bad=$((bad + 1)); echo "round $i: chat --once exit $rc" >>"$d/chat.err"
      fi
      continue
    fi
    code=$(ncurl -o /dev/null -w '%{http_code}' --data-urlencode "name=soak" \
      --data-urlencode "text=soak round $i" "$BASE/chat" 2>>"$d/chat.err"); rc=$?
    if [ "$rc" = 0 ] && [ "$code" = 201 ]; then posts=$((posts + 1)); else
      bad=$((bad + 1)); echo "round $i: POST /chat curl exit $rc status $code" >>"$d/chat.err"
    fi
    code=$(ncurl -o "$body" -w '%{http_code}' "$BASE/chat?since=$since" 2>>"$d/chat.err"); rc=$?
    next=$(jq -e '.next' "$body" 2>/dev/null)
    if [ "$rc" = 0 ] && [ "$code" = 200 ] && [ -n "$next" ] && [ "$next" -gt "$since" ]; then
      polls=$((polls + 1)); since=$next
    else
      bad=$((bad + 1))
      echo "round $i: GET /chat?since=$since curl exit $rc status $code next '$next': $(head -c 200 "$body")" >>"$d/chat.err"
    fi
  done
  printf 'rounds=%s\nposts=%s\npolls=%s\nbad=%s\n' "$i" "$posts" "$polls" "$bad" >"$d/chat.tally"
}

range_loop() {
  local d=$1 file=$FS$VIDEO i=0 ok=0 bad=0 len spec first last code rc want
  local body=$d/range.body
  len=$(fsize "$file")
  while [ "$(now_s)" -lt "$END" ] && [ "$i" -lt $((SECS * 100)) ]; do
    i=$((i + 1))
    case $((i % 4)) in
      0) first=$(( (i * 7919) % len )); last=$(( first + 65535 < len - 1 ? first + 65535 : len - 1 )); spec="$first-$last" ;;
      1) first=0; last=1023; spec="0-1023" ;;
      2) first=$((len - 500)); last=$((len - 1)); spec="-500" ;;
      3) first=$((len - 200000)); last=$((len - 1)); spec="$first-" ;;
    esac
    code=$(ncurl -o "$body" -w '%{http_code}' -r "$spec" "$BASE$VIDEO" 2>>"$d/range.err"); rc=$?
    want=$(tail -c +$((first + 1)) "$file" | head -c $((last - first + 1)) | sha256sum | cut -d' ' -f1)
    if [ "$rc" = 0 ] && [ "$code" = 206 ] && [ "$(sha "$body")" = "$want" ]; then ok=$((ok + 1)); else
      bad=$((bad + 1))
      echo "round $i: Range bytes=$spec curl exit $rc status $code, $(fsize "$body") bytes (want $((last - first + 1)), sha256 match: $([ "$(sha "$body")" = "$want" ] && echo yes || echo no))" >>"$d/range.err"
    fi
  done
  printf 'rounds=%s\nok=%s\nbad=%s\n' "$i" "$ok" "$bad" >"$d/range.tally"
}

# One line a second until END (+2 s), at most SECS + 30 lines: VmRSS and its parts (RssAnon:
# heap, stack, statics; RssFile: pages of the binary, including the file image).
rss_sampler() {
  local csv=$1 t0=$2 n=0 line
  echo "seconds,rss_kb,anon_kb,file_kb" >"$csv"
  while [ "$n" -lt $((SECS + 30)) ] && [ "$(now_s)" -le $((END + 2)) ]; do
    line=$(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
      END { if (r != "") print r "," a "," f }' "/proc/$SERVER_PID/status" 2>/dev/null)
    [ -n "$line" ] || break
    echo "$(( $(now_s) - t0 )),$line" >>"$csv"
    n=$((n + 1))
    sleep 1
  done
}

# ------------------------------------------------------------------ checks

tally() { sed -n "s/^$2=//p" "$1"; }

t_wrk() { # t_wrk NAME
  local f=$OUT/wrk-$1.txt line k v bad=0
  line=$(grep '^wrk-result ' "$f") || { echo "no result line from wrk ($f):"; tail -n 5 "$f"; return 1; }
  echo "info: $(sed -n 's/^ *Requests\/sec: *//p' "$f") req/s; ${line#wrk-result }"
  for kv in ${line#wrk-result }; do
    k=${kv%%=*}; v=${kv#*=}
    case $k in
      non2xx|badlen|connect|read|write|timeout|status) [ "$v" = 0 ] || { echo "$k = $v"; bad=1; } ;;
      requests) [ "$v" -gt 0 ] || { echo "no requests"; bad=1; } ;;
    esac
  done
  return "$bad"
}

t_chat() {
  local d=$1 f=$1/chat.tally
  [ -f "$f" ] || { echo "chat loop left no tally"; return 1; }
  echo "info: $(tally "$f" rounds) rounds: $(tally "$f" posts) posts, $(tally "$f" polls) polls, $(tally "$f" bad) failed"
  [ "$(tally "$f" bad)" = 0 ] && [ "$(tally "$f" posts)" -gt 0 ] || { head -n 10 "$d/chat.err"; return 1; }
}

t_range() {
  local d=$1 f=$1/range.tally
  [ -f "$f" ] || { echo "range loop left no tally"; return 1; }
  echo "info: $(tally "$f" rounds) range requests, $(tally "$f" ok) ok, $(tally "$f" bad) failed"
  [ "$(tally "$f" bad)" = 0 ] && [ "$(tally "$f" ok)" -gt 0 ] || { head -n 10 "$d/range.err"; return 1; }
}

t_rss_flat() {
  local warm=$1 end=$2 delta limit
  [ -n "$warm" ] && [ -n "$end" ] || { echo "no RSS samples (warm-up '$warm', end '$end')"; return 1; }
  delta=$((end - warm))
  limit=$(( warm / 20 > 256 ? warm / 20 : 256 ))
  echo "info: warm-up $warm KB, end $end KB, change $delta KB (allowed < $limit KB)"
  [ "$delta" -lt "$limit" ] || { echo "RSS grew by $delta KB after the warm-up"; return 1; }
}

t_probe() {
  local d=$1/probe i bad=0 code rc
  mkdir -p "$d"
  for i in $(seq 1 10); do
    ( ncurl -o "$d/$i.body" -w '%{http_code}' "$BASE/img/car.jpeg" >"$d/$i.code" 2>"$d/$i.err"; echo $? >"$d/$i.rc" ) &
  done
  wait
  for i in $(seq 1 10); do
    rc=$(cat "$d/$i.rc"); code=$(cat "$d/$i.code")
    if [ "$rc" != 0 ] || [ "$code" != 200 ] || [ "$(sha "$d/$i.body")" != "$(sha "$FS/img/car.jpeg")" ]; then
      bad=1; echo "client $i: curl exit $rc status $code $(fsize "$d/$i.body") bytes $(cat "$d/$i.err")"
    fi
  done
  return "$bad"
}

t_server_alive() {
  t_no_panic || return 1
  echo "info: /status $(ncurl "$BASE/status" 2>/dev/null | jq -c 'del(.slots)' 2>/dev/null)"
}

# ------------------------------------------------------------------ setup / teardown

# Our own background jobs (loops, wrk, sampler) first, then (lib.sh's cleanup) the server.
stop_jobs() {
  local pids
  pids=$(jobs -p)
  # shellcheck disable=SC2086
  [ -n "$pids" ] && kill $pids 2>/dev/null
}
ON_CLEANUP=(stop_jobs)
CLEANUP_REAP=1

need_root "network namespace + tap"
need ip iproute2
need curl curl
need wrk wrk
need jq jq
need sha256sum coreutils
need timeout coreutils
need awk gawk

release_bins

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/server.log
CSV=$OUT/rss.csv
set_traps
make_tap_ns quiet

say "server: $BIN --tap $TAP (namespace $NS, log $LOG, RUST_LOG=${RUST_LOG:-warn})"
RUST_LOG=${RUST_LOG:-warn} start_server
wait_up "$NS" "$SERVER_PID" "$BASE/" 50
case $? in
  1) die "server exited early (status $UP_STATUS): $(tail -n 5 "$LOG")" ;;
  2) die "server not answering $BASE/ after 10 s: $(tail -n 5 "$LOG")" ;;
esac
say "server up (pid $SERVER_PID)"

# Touch the whole image once before the clock starts: the files are pages of the binary, and
# RSS counts the ones read so far, so without this the range loop's first visits to new parts
# of the video look like growth.
t_touch() {
  local f rel bad=0
  while IFS= read -r -d '' f; do
    rel=${f#"$FS"}
    ncurl -o "$TMPD/touch" "$BASE$rel" && cmp -s "$TMPD/touch" "$f" || { echo "GET $rel: not the file's bytes"; bad=1; }
  done < <(find "$FS" -type f -print0)
  return "$bad"
}
check "before the load: every file under $FS/ once, byte-exact" t_touch

T0=$(now_s)
END=$((T0 + SECS))
say "load for $SECS s: 2 x wrk -c $WRK_CONNS, chat loop, range loop; RSS every 1 s into $CSV"

LOAD_PIDS=()
rss_sampler "$CSV" "$T0" &
LOAD_PIDS+=($!)
for w in index.html:/index.html car:/img/car.jpeg; do
  name=${w%%:*}; path=${w#*:}
  in_ns timeout $((SECS + 30)) wrk -t1 -c"$WRK_CONNS" -d"${SECS}s" --timeout 5s \
    -s scripts/soak/count.lua "$BASE$path" -- "$(fsize "$FS$path")" >"$OUT/wrk-$name.txt" 2>&1 &
  LOAD_PIDS+=($!)
done
chat_loop "$TMPD" &
LOAD_PIDS+=($!)
range_loop "$TMPD" &
LOAD_PIDS+=($!)
# Progress every minute while the load runs (bounded: the load ends at END).
while [ "$(now_s)" -lt "$END" ]; do
  left=$((END - $(now_s)))
  sleep $(( left < 60 ? left : 60 )) &
  wait $!   # a signal interrupts `wait`, not a foreground sleep: Ctrl-C cleans up at once
  [ "$(now_s)" -lt "$END" ] || break
  say "$(( $(now_s) - T0 )) s: VmRSS $(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null) KB"
done
wait "${LOAD_PIDS[@]}"   # not a bare `wait`: that would wait for the server too
say "load finished after $(( $(now_s) - T0 )) s"

# Figures: warm-up = first sample at or after WARMUP s; end = last sample within the load.
WARM_RSS=$(awk -F, -v w="$WARMUP" 'NR > 1 && $1 >= w { print $2; exit }' "$CSV")
START_RSS=$(awk -F, 'NR == 2 { print $2 }' "$CSV")
END_RSS=$(awk -F, -v s="$SECS" 'NR > 1 && $1 <= s { v = $2 } END { print v }' "$CSV")
MAX_RSS=$(awk -F, 'NR > 1 && $2 > m { m = $2 } END { print m }' "$CSV")
MAX_AFTER=$(awk -F, -v w="$WARMUP" 'NR > 1 && $1 >= w && $2 > m { m = $2 } END { print m }' "$CSV")
ANON=$(awk -F, -v w="$WARMUP" -v s="$SECS" 'NR > 1 && $1 >= w && a == "" { a = $3 } NR > 1 && $1 <= s { e = $3 }
  END { print a " -> " e }' "$CSV")
FILE=$(awk -F, -v w="$WARMUP" -v s="$SECS" 'NR > 1 && $1 >= w && a == "" { a = $4 } NR > 1 && $1 <= s { e = $4 }
  END { print a " -> " e }' "$CSV")
SAMPLES=$(($(wc -l <"$CSV") - 1))
echo
say "RSS (KB): at launch ${START_RSS:-?}, after ${WARMUP} s warm-up ${WARM_RSS:-?}, at end ${END_RSS:-?}, max ${MAX_RSS:-?} (max after warm-up ${MAX_AFTER:-?}); $SAMPLES samples in $CSV"
say "of which, warm-up -> end (KB): RssAnon $ANON, RssFile $FILE"

echo
check "wrk /index.html: no socket errors, no non-2xx, every body $(fsize "$FS/index.html") bytes" t_wrk index.html
check "wrk /img/car.jpeg: no socket errors, no non-2xx, every body $(fsize "$FS/img/car.jpeg") bytes" t_wrk car
check "chat loop: every POST 201, every poll 200 with JSON, chat CLI exits 0" t_chat "$TMPD"
check "range loop on $VIDEO: every answer 206 with the file's bytes" t_range "$TMPD"
check "RSS flat after warm-up (end - warm-up < 5% or < 256 KB)" t_rss_flat "$WARM_RSS" "$END_RSS"
check "final probe: 10 parallel GET /img/car.jpeg all 200 and byte-exact" t_probe "$TMPD"
check "server still running, no panic" t_server_alive

echo
on_fail() { echo "(artifacts in $OUT)"; }
finish
