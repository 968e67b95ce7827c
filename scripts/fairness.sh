#!/usr/bin/env bash
# fairness.sh — ten slots that never stall, on a real tap with ordinary clients.
#
# Usage (as root; CI runs it):  sudo scripts/fairness.sh
#
# Inside a network namespace this script creates and deletes (smolhttpd-fair-PID): the tap,
# the release server and every client (curl and scripts/e2e/crowd.py). Every client is bounded
# in time. Checks, each against the 10 slots:
#   - 40 keep-alive clients x 10 requests: all 400 answered within 3 s;
#   - 10 clients reading /video/Planeta.mp4 at 1 KB/s: a new curl of / served within 2 s,
#     three times in a row;
#   - 10 slow-header clients: a new curl served within 2 s;
#   - 10 idle keep-alive connections: a new client's connect time under 100 ms;
#   - a lone client reading /img/car.jpeg at 1 KB/s with nobody waiting: every byte;
#   - 30 concurrent downloads of /video/Planeta.mp4: all byte-exact;
#   - ab (ApacheBench) with 50 concurrent clients, five a slot, Connection: close and then
#     keep-alive: every request answered, none failed;
#   - the eviction counters in /status, and no panic.
# Needs ab (Debian: apt-get install apache2-utils; installed here with apt-get if missing).
# Output: `ok   - ...` / `FAIL - ...` lines, then `N passed, M failed`.
# shellcheck disable=SC2317  # checks are called via check()
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${FAIR_OUT:-target/fairness}
NS=smolhttpd-fair-$$
CROWD=scripts/e2e/crowd.py
CURL_LIMITS=(--connect-timeout 10 --max-time 20)
need_root "it creates a network namespace and a tap"
need curl curl
need python3 python3
if ! command -v ab >/dev/null 2>&1; then
  say "ab not found: installing apache2-utils"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apache2-utils; } >/dev/null 2>&1 ||
    die "could not install ab: apt-get install apache2-utils"
fi
release_bins
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/server.log
CLEANUP_REAP=1
set_traps
make_tap_ns quiet
start_server
server_up "$BASE/" 50 10 || exit 1

crowd() { in_ns timeout 60 python3 "$CROWD" "$1" "$SERVER_IP" "$PORT" "${@:2}"; }

# secs_for CURL-ARGS...: the seconds one bounded curl of / took ("fail" when it failed).
secs_for() { ncurl -o /dev/null -w '%{time_total}' "$@" "$BASE/" || echo fail; }
within() { awk -v t="$1" -v max="$2" 'BEGIN { exit !(t != "fail" && t + 0 <= max) }'; }

t_keepalive() {
  local out
  out=$(crowd keepalive 40 10 /text/text.htm); echo "info: $out"
  case $out in "answered=400 of 400"*) ;; *) return 1 ;; esac
  within "$(echo "$out" | sed -n 's/.* total=\([0-9.]*\).*/\1/p')" 3
}

t_slow_readers() {
  local pids=() t i rc=0
  mkdir -p "$TMPD/readers"
  for i in $(seq 1 10); do
    crowd slowread /video/Planeta.mp4 1000 20 "$TMPD/readers/$i" >/dev/null & pids+=($!)
  done
  for _ in $(seq 1 100); do [ "$(find "$TMPD/readers" -type f | wc -l)" -ge 10 ] && break; sleep 0.1; done
  sleep 5   # past the 2 s rate window, and the first burst into the readers' buffers
  for i in 1 2 3; do
    t=$(secs_for); echo "info: new curl $i: ${t} s"
    within "$t" 2 || rc=1
    sleep 0.5
  done
  for p in "${pids[@]}"; do wait "$p"; done
  return $rc
}

t_slow_heads() {
  local pids=() t i
  mkdir -p "$TMPD/heads"
  for i in $(seq 1 10); do crowd slowhead 12 "$TMPD/heads/$i" >/dev/null & pids+=($!); done
  # All ten connected (python starts slowly on a busy machine), then past the 500 ms grace.
  for _ in $(seq 1 100); do [ "$(find "$TMPD/heads" -type f | wc -l)" -ge 10 ] && break; sleep 0.1; done
  sleep 1
  t=$(secs_for); echo "info: new curl: ${t} s ($(find "$TMPD/heads" -type f | wc -l) slow heads connected)"
  for p in "${pids[@]}"; do wait "$p"; done
  within "$t" 2
}

t_idle() {
  local pid t
  crowd idle 10 6 >/dev/null & pid=$!
  sleep 1
  t=$(ncurl -o /dev/null -w '%{time_connect}' "$BASE/" || echo fail)
  echo "info: time_connect ${t} s"
  wait "$pid"
  within "$t" 0.1
}

t_lone_slow_reader() {
  local out want
  want=$(sha "$FS/img/car.jpeg")
  out=$(crowd slowread /img/car.jpeg 1000 40); echo "info: $out"
  case $out in *"sha256=$want complete=1"*) ;; *) return 1 ;; esac
}

t_downloads() {
  local pids=() i bad=0 want
  want=$(sha "$FS/video/Planeta.mp4")
  for i in $(seq 1 30); do
    ncurl --max-time 60 -o "$TMPD/dl$i" "$BASE/video/Planeta.mp4" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
  for i in $(seq 1 30); do [ "$(sha "$TMPD/dl$i")" = "$want" ] || bad=$((bad + 1)); done
  echo "info: $((30 - bad)) of 30 byte-exact"
  [ "$bad" -eq 0 ]
}

# t_ab [-k]: ab -c 50 -n 3000 of /index.html (each ab connection gives up after 10 s of
# silence, the whole run after 60 s): every request complete, none failed.
t_ab() {
  local out
  out=$(in_ns timeout 60 ab -q -s 10 -c 50 -n 3000 "$@" "$BASE/index.html" 2>&1)
  echo "$out" | grep -E "^(Complete|Failed|Non-2xx|Keep-Alive requests|Requests per second)|apr_|100%" | sed 's/^/info: /'
  echo "$out" | grep -q "^Complete requests: *3000$" && echo "$out" | grep -q "^Failed requests: *0$" &&
    ! echo "$out" | grep -q "^Non-2xx"
}

t_counters() {
  local s
  s=$(ncurl "$BASE/status") || return 1
  echo "info: $(echo "$s" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(f"{k} {d[k]}" for k in ("held_off","evicted_idle","evicted_head","evicted_slow")))')"
  echo "$s" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(not (d["evicted_slow"] >= 1 and d["evicted_head"] >= 1))'
}

section "fairness: 10 slots under crowds"
check "40 keep-alive clients x 10 requests: all 400 answered within 3 s" t_keepalive
check "10 readers of Planeta.mp4 at 1 KB/s: a new curl of / within 2 s, 3 times" t_slow_readers
check "10 slow-header clients: a new curl of / within 2 s" t_slow_heads
check "10 idle keep-alive connections: a new client connects within 100 ms" t_idle
check "a lone reader of car.jpeg at 1 KB/s, nobody waiting: every byte" t_lone_slow_reader
check "30 concurrent downloads of Planeta.mp4: all byte-exact" t_downloads
check "ab -c 50 -n 3000, Connection: close: all answered, none failed" t_ab
check "ab -c 50 -n 3000 -k (keep-alive): all answered, none failed" t_ab -k
check "/status counts the evictions (slow readers and slow heads)" t_counters
check "server still running, no panic" t_no_panic
echo
finish
