#!/usr/bin/env bash
# faults.sh — the real smolhttpd binary on a real TAP under packet loss: every file arrives
# byte-exact and every chat post is kept exactly once.
#
# Usage (as root; CI runs it):  sudo scripts/faults.sh
#
# Everything happens inside a network namespace this script creates and deletes
# (smolhttpd-faults-PID): the tap, the server, nftables rules and every client (curl and the
# `chat` CLI). No traffic leaves that namespace. Every wait and loop is bounded.
#
# Three phases, each with a fresh server:
#   nft     the server with offload (the default), its clients in a second namespace routed
#           through the tap's host side (setup_routed, lib.sh), and the kernel drops
#           FAULTS_LOSS% (default 10) of the packets in each direction on the client's wire,
#           with nftables netdev hooks on its veth (netem is not available here):
#             hook ingress device vr1: packets reaching the client = server -> client
#             hook egress  device vr1: packets the client sends   = client -> server
#           (egress netdev hooks need Linux >= 5.16 and nftables >= 1.0.1). The router cuts the
#           server's segments of up to 64 KB to MTU-sized packets first (ethtool; without it
#           the veth carries them whole and says so), so a drop loses one wire packet, as on a
#           real link. (Dropped at the tap, a 64 KB frame would lose 45 packets at once.)
#   nft-nooff  the server with --no-offload, the clients beside the tap, the same drops on the
#           tap itself (every frame it carries is one wire segment):
#             hook ingress device tap0: frames the server writes = server -> client
#             hook egress  device tap0: frames the kernel sends  = client -> server
#   inproc  no nftables; the server itself drops and corrupts frames with smoltcp's
#           FaultInjector: --drop-chance FAULTS_LOSS --corrupt-chance FAULTS_CORRUPT (default 2).
# In each phase: curl fetches every file under fs_image/ (all at once, one connection each,
# curl --retry 0: recovering is TCP's job) and compares sha256s; then FAULTS_CLIENTS (4) chat
# clients in parallel post FAULTS_PER_CLIENT (5) distinct texts each; then GET /chat?since=0
# must hold each posted text exactly once, and nothing else.
#
# Bounds: each curl --max-time FAULTS_MAX_TIME, each chat client 120 s, so a phase ends within
# about 6 minutes. The chat client waits 15 s for a reply and sends a post again only when
# the server cannot have kept it (no connection, closed with no reply, 408), so a post that
# meets the server's 5 s idle deadline after three lost copies is still kept once. Seen here at
# 10% loss each way: nft 17-40 s a phase, nft-nooff 50-75 s, of which the 1.4 MB
# /video/Planeta.mp4 takes 8-35 s and 38-68 s (smoltcp: no SACK, minimum RTO 1 s). smoltcp
# doubles its RTO on each timeout and takes no new sample while it resends, so a response
# can pause for 1+2+4+8+16+32 s; with the default deadlines (send progress 10 s, idle 5 s) a
# segment lost four times in a row aborts it. The deadlines are for slow or silent clients, not
# for lossy links, so every phase runs the server with the longer ones of FAULTS_DEADLINES
# (send progress 120 s: a pause of six timeouts in a row; README's troubleshooting advises
# raising them on such links), and curl waits FAULTS_MAX_TIME (240 s) for a file.
# The log's `send timeout` lines and /status `timeouts` are shown after each phase.
#
# Env:
#   SMOLHTTPD_BIN, CHAT_BIN  binaries (default target/release/{smolhttpd,chat}, built if missing)
#   FAULTS_OUT       artifacts: server logs, per-phase results (default target/faults)
#   FAULTS_PHASES    phases to run (default "nft nft-nooff inproc")
#   FAULTS_LOSS      drop percentage per direction (default 10)
#   FAULTS_CORRUPT   corrupt percentage per direction in the inproc phase (default 2)
#   FAULTS_MAX_TIME  curl --max-time per file, seconds (default 240)
#   FAULTS_DEADLINES server flags for every phase (default "--send-timeout 120
#                    --idle-timeout 15 --head-timeout 15 --body-timeout 15"; "" for the defaults)
#   FAULTS_CLIENTS, FAULTS_PER_CLIENT  chat clients and posts per client (default 4, 5)
#   MTU, HOST_CIDR   passed to tap-up.sh
#
# Output: one line per check, `ok   - what` or `FAIL - what` (with indented details), the time
# each phase took, then `N passed, M failed`. Exit status 0 only if nothing failed.
# Needs (Debian packages): iproute2, nftables, curl, jq, coreutils.
# shellcheck disable=SC2317,SC2015  # checks are called via check(); `[ a ] && [ b ] || fail` is meant
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${FAULTS_OUT:-target/faults}
NS=smolhttpd-faults-$$
PHASES=${FAULTS_PHASES:-nft nft-nooff inproc}
LOSS=${FAULTS_LOSS:-10}
CORRUPT=${FAULTS_CORRUPT:-2}
MAX_TIME=${FAULTS_MAX_TIME:-240}
read -r -a DEADLINES <<<"${FAULTS_DEADLINES---send-timeout 120 --idle-timeout 15 --head-timeout 15 --body-timeout 15}"
CLIENTS=${FAULTS_CLIENTS:-4}
PER_CLIENT=${FAULTS_PER_CLIENT:-5}
TIMINGS=()

for v in LOSS CORRUPT MAX_TIME CLIENTS PER_CLIENT; do
  case ${!v} in ''|*[!0-9]*) die "$v must be a whole number, got '${!v}'" ;; esac
done
[ "$LOSS" -le 100 ] && [ "$CORRUPT" -le 100 ] || die "percentages must be 0..100"
[ "$CLIENTS" -ge 1 ] && [ "$CLIENTS" -le 8 ] || die "FAULTS_CLIENTS must be 1..8"
[ $((CLIENTS * PER_CLIENT)) -le 64 ] || die "at most 64 posts per phase (the server keeps the newest 64)"

# ------------------------------------------------------------------ helpers

# ncurl (lib.sh): no retries, generous limits.
CURL_LIMITS=(--retry 0 --connect-timeout 60 --max-time "$MAX_TIME")

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------ server

phase_server() { # phase_server PHASE ARGS...
  local phase=$1
  shift
  LOG=$OUT/server-$phase.log
  say "server: $BIN --tap $TAP${*:+ $*} (namespace $NS, log $LOG)"
  start_server "$@"
  # Up to ~30 s: with in-process loss the first probes may be dropped.
  server_up "$BASE/404.html" 60 30 2 3
}

# The clients' namespace: $NS, or $NS2 (routed) in the nft phase.
CNS=$NS
NS2=${NS}-r

# nft_loss_on DEV: in $CNS, drop LOSS% of the packets DEV receives (ingress) and sends (egress).
nft_loss_on() {
  ip netns exec "$CNS" nft -f - <<EOF
table netdev loss {
  chain in {
    type filter hook ingress device $1 priority 0;
    counter numgen random mod 100 < $LOSS counter drop
  }
  chain out {
    type filter hook egress device $1 priority 0;
    counter numgen random mod 100 < $LOSS counter drop
  }
}
EOF
}

nft_loss_off() { ip netns exec "$CNS" nft delete table netdev loss 2>/dev/null; }

# nft_counts CHAIN: "DROPPED of TOTAL" packets seen by that chain.
nft_counts() {
  ip netns exec "$CNS" nft list chain netdev loss "$1" 2>/dev/null |
    grep -o 'packets [0-9]*' | awk '{ n[NR] = $2 } END { printf "%s of %s", n[2], n[1] }'
}

# ------------------------------------------------------------------ checks

# The file fetches ran in the background; each left "$D/N.res" (curl's -w line) and N.body.
t_file() {
  local d=$1 i=$2 file=$3 code t size rc
  rc=$(cat "$d/$i.rc" 2>/dev/null || echo "?")
  read -r code t size <"$d/$i.res" 2>/dev/null
  echo "info: ${t:-?} s, ${size:-?} bytes"
  if [ "$rc" != 0 ]; then echo "curl exit $rc after ${t:-?} s"; cat "$d/$i.err" 2>/dev/null; return 1; fi
  [ "$code" = 200 ] || { echo "status $code, want 200"; return 1; }
  if [ "$(sha "$d/$i.body")" != "$(sha "$file")" ]; then
    echo "body differs: got $(fsize "$d/$i.body") bytes sha256 $(sha "$d/$i.body"), want $(fsize "$file") bytes $(sha "$file")"
    return 1
  fi
}

t_clients_ok() {
  local d=$1 bad=0 c rc
  for c in $(seq 1 "$CLIENTS"); do
    rc=$(cat "$d/chat$c.rc" 2>/dev/null || echo "?")
    if [ "$rc" != 0 ]; then
      bad=1
      echo "client c$c exit $rc; $(grep -c 'posted message' "$d/chat$c.err") of $PER_CLIENT posts acknowledged:"
      grep -v 'posted message' "$d/chat$c.err" | head -n 5
    fi
  done
  echo "info: $(cat "$d"/chat*.err | grep -c 'posted message') of $((CLIENTS * PER_CLIENT)) posts acknowledged with an id"
  return "$bad"
}

# Every posted text exactly once in GET /chat?since=0, no others; ids increasing; the ids the
# clients were given are the ids of their texts.
t_chat_once() {
  local d=$1 json=$1/chat.json code bad=0 t n total
  code=$(ns_curl "$CNS" -o "$json" -w '%{http_code}' "$BASE/chat?since=0") || { echo "GET /chat?since=0 failed"; return 1; }
  [ "$code" = 200 ] || { echo "GET /chat?since=0: status $code"; return 1; }
  jq -e . "$json" >/dev/null 2>&1 || { echo "not JSON:"; head -c 300 "$json"; return 1; }
  total=$(jq '.messages | length' "$json")
  echo "info: $total messages kept, next $(jq .next "$json")"
  while IFS= read -r t; do
    n=$(jq --arg t "$t" '[.messages[] | select(.text == $t)] | length' "$json")
    if [ "$n" != 1 ]; then bad=1; echo "text '$t' appears $n times, want 1"; fi
  done <"$d/texts"
  jq -r '.messages[].text' "$json" | sort | comm -13 <(sort "$d/texts") - | while IFS= read -r t; do
    echo "unexpected text '$t'"
  done | grep . && bad=1
  jq -e '[.messages[].id] as $i | ($i == ($i | sort)) and ($i | unique | length) == ($i | length)' \
    "$json" >/dev/null || { bad=1; echo "ids not strictly increasing: $(jq -c '[.messages[].id]' "$json")"; }
  return "$bad"
}

t_server_alive() {
  t_no_panic || return 1
  local st
  st=$(ncurl "$BASE/status" 2>/dev/null | jq -c 'del(.slots)' 2>/dev/null)
  echo "info: /status ${st:-unavailable}"
  local aborted
  aborted=$(grep -cE 'send timeout|aborted' "$LOG")
  [ "$aborted" -eq 0 ] || { echo "info: log has $aborted aborted/send-timeout lines:"; grep -E 'send timeout|aborted' "$LOG" | head -n 5 | sed 's/^/info:   /'; }
  return 0
}

# ------------------------------------------------------------------ a phase

run_phase() { # run_phase NAME DESCRIPTION
  local phase=$1 desc=$2 d="$TMPD/$1" t0 t1 t2 t3 i c f rel files=() pids=()
  mkdir -p "$d"
  section "$phase: $desc"
  t0=$(now)

  # Every file at once, one curl each (11 connections for 10 slots: one is held off briefly).
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$FS" -type f -print0 | sort -z)
  for i in "${!files[@]}"; do
    rel=${files[$i]#"$FS"}
    (
      ns_curl "$CNS" -o "$d/$i.body" -w '%{http_code} %{time_total} %{size_download}\n' "$BASE$rel" \
        >"$d/$i.res" 2>"$d/$i.err"
      echo $? >"$d/$i.rc"
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"   # not a bare `wait`: that would wait for the server too
  pids=()
  t1=$(now)
  for i in "${!files[@]}"; do
    rel=${files[$i]#"$FS"}
    check "$phase: GET $rel: 200, sha256 of the $(fsize "${files[$i]}") bytes matches" t_file "$d" "$i" "${files[$i]}"
  done

  # Chat: CLIENTS clients at once, each posting PER_CLIENT unique texts (one connection per post).
  : >"$d/texts"
  t2=$(now)
  for c in $(seq 1 "$CLIENTS"); do
    for i in $(seq 1 "$PER_CLIENT"); do
      echo "$phase c$c m$i $$-$RANDOM" | tee -a "$d/texts" >>"$d/in$c"
    done
    (
      timeout 120 ip netns exec "$CNS" "$CHAT_BIN" "$SERVER_IP" "$PORT" --name "c$c" --verbose \
        <"$d/in$c" >"$d/chat$c.out" 2>"$d/chat$c.err"
      echo $? >"$d/chat$c.rc"
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  t3=$(now)
  check "$phase: $CLIENTS chat clients posted $PER_CLIENT texts each, every post answered" t_clients_ok "$d"
  check "$phase: GET /chat?since=0 holds each of the $((CLIENTS * PER_CLIENT)) texts exactly once, nothing else" t_chat_once "$d"
  check "$phase: server still running, no panic" t_server_alive

  local tf tc tt
  tf=$(elapsed "$t0" "$t1"); tc=$(elapsed "$t2" "$t3"); tt=$(elapsed "$t0" "$(now)")
  TIMINGS+=("$phase: files ${tf} s, chat ${tc} s, phase ${tt} s")
  say "$phase took ${tt} s (files ${tf} s, chat posts ${tc} s)"
  {
    for i in "${!files[@]}"; do
      printf '%s %s\n' "${files[$i]#"$FS"}" "$(cat "$d/$i.res" 2>/dev/null)"
    done
  } >"$OUT/times-$phase.txt"
}

# ------------------------------------------------------------------ setup / teardown

need_root "network namespace + tap + nftables"
need ip iproute2
need curl curl
need jq jq
need sha256sum coreutils
need timeout coreutils
need awk gawk
case " $PHASES " in *" nft "*) need nft nftables ;; esac

release_bins

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
set_traps
make_tap_ns quiet

for phase in $PHASES; do
  case $phase in
    nft)
      phase_server nft "${DEADLINES[@]}" || die "server did not start"
      setup_routed || die "could not set up the routed namespace $NS2"
      [ "$SOFT_GSO" = 1 ] ||
        say "ethtool missing (apt-get install ethtool): the veth carries whole 64 KB segments, so a drop loses many packets"
      CNS=$NS2
      # The server is up before the loss starts, so the readiness probe is not a lottery.
      nft_loss_on vr1 || die "nft could not install the netdev ingress/egress loss rules (kernel >= 5.16 needed for egress)"
      run_phase nft "server with offload, clients routed: nftables drops $LOSS% per direction on their wire (vr1)"
      say "nft drops: server->client (ingress) $(nft_counts in) packets, client->server (egress) $(nft_counts out) packets"
      nft_loss_off
      CNS=$NS
      stop_server
      ;;
    nft-nooff)
      phase_server nft-nooff "${DEADLINES[@]}" --no-offload || die "server did not start"
      nft_loss_on "$TAP" || die "nft could not install the netdev ingress/egress loss rules (kernel >= 5.16 needed for egress)"
      run_phase nft-nooff "server --no-offload: nftables drops $LOSS% per direction on $TAP"
      say "nft-nooff drops: server->client (ingress) $(nft_counts in) frames, client->server (egress) $(nft_counts out) frames"
      nft_loss_off
      stop_server
      ;;
    inproc)
      phase_server inproc "${DEADLINES[@]}" --drop-chance "$LOSS" --corrupt-chance "$CORRUPT" || die "server did not start"
      run_phase inproc "server's FaultInjector: --drop-chance $LOSS --corrupt-chance $CORRUPT"
      stop_server
      ;;
    *) die "unknown phase '$phase' (nft, nft-nooff, inproc)" ;;
  esac
done

echo
for t in "${TIMINGS[@]}"; do say "time: $t"; done
echo
on_fail() { echo "(server logs and per-file times in $OUT)"; }
finish
