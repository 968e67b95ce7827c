# shellcheck shell=bash
# lib.sh — the pieces scripts/{e2e,faults,soak,qemu-test,bench}.sh share. Sourced, not run:
#
#   . "$(dirname "$0")/lib.sh"
#
# Sourcing it changes to the repository root (ROOT), sets the test network's names (TAP,
# SERVER_IP, PORT, BASE, FS) and unsets the proxy variables, so no test's HTTP goes through a
# proxy from the caller's environment. Messages are prefixed with PROG (the script's name
# without .sh unless set before sourcing).
#
# What a script sets and lib.sh uses:
#   NS           the namespace in_ns/ncurl/start_server work in
#   BIN, LOG     the server binary (start_server) and its log
#   CURL_LIMITS  ncurl's curl time limits, e.g. (--connect-timeout 5 --max-time 20)
#   ON_CLEANUP   functions cleanup runs first (before stop_server and the namespaces)
#   on_fail      optional function finish runs when a check failed
# shellcheck disable=SC2034  # the variables set here are used by the scripts that source it

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

PROG=${PROG:-$(basename "$0" .sh)}
TAP=tap0
SERVER_IP=192.168.69.1
PORT=80
BASE="http://$SERVER_IP"
FS=fs_image
NS=
BIN=
LOG=
SERVER_PID=
TMPD=
PASS=0
FAIL=0
SKIP=0
CURL_LIMITS=(--connect-timeout 5 --max-time 20)
ON_CLEANUP=()
CLEANUP_NS=()   # namespaces made by make_ns, deleted by cleanup
CLEANUP_REAP=0  # 1: cleanup ends with a bare `wait` for the (killed) background jobs

# Never route the test's HTTP through a proxy from the caller's environment.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

say() { echo "$PROG: $*"; }
die() { echo "$PROG: $*" >&2; exit 2; }

# ------------------------------------------------------------------ tools

# need CMD APT-PACKAGE: die with an install hint unless CMD is on PATH.
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: apt-get install $2"; }

# need_browser: node >= 18, Chromium, and playwright-core in scripts/e2e/node_modules (installed
# with npm on first use, no browser download): what the headless-Chromium checks run on.
need_browser() {
  need node nodejs
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
    die "node $(node --version) is too old for playwright-core (needs >= 18)"
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || die "${CHROMIUM:-/usr/bin/chromium} not found: apt-get install chromium"
  if [ ! -f scripts/e2e/node_modules/playwright-core/package.json ]; then
    need npm npm
    say "installing playwright-core into scripts/e2e/node_modules (no browser download)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 300 npm install --no-audit --no-fund --no-package-lock \
      --loglevel=error --prefix scripts/e2e >/dev/null || die "npm install of playwright-core failed"
  fi
}

# need_root WHY: die unless running as root.
need_root() { [ "$(id -u)" -eq 0 ] || die "needs root ($1): run with sudo"; }

# release_bins [BUILD-NOTE]: BIN and CHAT_BIN, absolute, from SMOLHTTPD_BIN / CHAT_BIN or
# target/release (built with cargo when one of those is missing).
# shellcheck disable=SC2120  # the note is optional
release_bins() {
  local chat_env=${CHAT_BIN:-}
  BIN=${SMOLHTTPD_BIN:-target/release/smolhttpd}
  CHAT_BIN=${CHAT_BIN:-target/release/chat}
  [ -z "${SMOLHTTPD_BIN:-}" ] || [ -x "$BIN" ] || die "SMOLHTTPD_BIN=$BIN is not an executable file"
  [ -z "$chat_env" ] || [ -x "$CHAT_BIN" ] || die "CHAT_BIN=$CHAT_BIN is not an executable file"
  if [ ! -x "$BIN" ] || [ ! -x "$CHAT_BIN" ]; then
    need cargo "rustup (https://rustup.rs) or cargo"
    say "building the release binaries${1:+ ($1)}"
    cargo build --release --bins || die "cargo build failed"
  fi
  [ -x "$BIN" ] || die "$BIN is not an executable file"
  [ -x "$CHAT_BIN" ] || die "$CHAT_BIN is not an executable file"
  BIN=$(realpath "$BIN"); CHAT_BIN=$(realpath "$CHAT_BIN")
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { stat -c %s "$1"; }

# ------------------------------------------------------------------ namespaces

# ns_exec NS CMD...: run CMD inside namespace NS; in_ns CMD...: inside $NS.
ns_exec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
in_ns() { ip netns exec "$NS" "$@"; }

# ns_curl NS ARGS... / ncurl ARGS...: curl inside a namespace / $NS, quiet but showing
# errors, bounded by CURL_LIMITS.
# CURL_PREFIX: an optional command to run curl under (bench.sh: taskset -c 1).
CURL_PREFIX=()
ns_curl() { local ns=$1; shift; ip netns exec "$ns" "${CURL_PREFIX[@]}" curl -sS --noproxy '*' "${CURL_LIMITS[@]}" "$@"; }
ncurl() { ns_curl "$NS" "$@"; }

# make_ns NS: create namespace NS with lo up; cleanup deletes it.
make_ns() {
  ip netns add "$1" || return 1
  CLEANUP_NS+=("$1")
  ip -n "$1" link set lo up
}

# make_tap_ns show|quiet: create $NS and tap0 in it (scripts/tap-up.sh, showing its output
# or not).
make_tap_ns() {
  make_ns "$NS" || die "ip netns add $NS failed"
  if [ "$1" = quiet ]; then
    in_ns scripts/tap-up.sh "$TAP" >/dev/null || die "tap-up.sh failed"
  else
    in_ns scripts/tap-up.sh "$TAP" || die "tap-up.sh failed"
  fi
}

# setup_routed: a second namespace $NS2 routed through the tap's host side: $NS2 (veth vr1,
# 10.69.2.2 and fd69:2::2) -> $NS (veth vr0, 10.69.2.1 and fd69:2::1, forwarding) -> tap0 ->
# smolhttpd. Segmentation
# offload is turned off on vr0 (ethtool), so the kernel cuts smolhttpd's large segments to
# the veth's MTU (1500) in software and vr1 carries wire-sized packets: SOFT_GSO=1 (0 when
# ethtool is missing). cleanup deletes $NS2.
SOFT_GSO=0
setup_routed() {
  make_ns "$NS2" || return 1
  ip -n "$NS" link add vr0 type veth peer name vr1 netns "$NS2" || return 1
  ip -n "$NS" addr add 10.69.2.1/24 dev vr0 && ip -n "$NS2" addr add 10.69.2.2/24 dev vr1 &&
    ip -n "$NS" link set vr0 up && ip -n "$NS2" link set vr1 up &&
    ip -n "$NS2" route add default via 10.69.2.1 &&
    ip netns exec "$NS" sysctl -qw net.ipv4.ip_forward=1 || return 1
  # The same over IPv6: fd69:2::2 -> fd69:2::1 (forwarding) -> tap0 -> fd69::1, whose default
  # route is the tap's host side fd69::100 (--gateway6).
  ip -n "$NS" -6 addr add fd69:2::1/64 dev vr0 nodad && ip -n "$NS2" -6 addr add fd69:2::2/64 dev vr1 nodad &&
    ip -n "$NS2" -6 route add default via fd69:2::1 &&
    ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.forwarding=1 || return 1
  SOFT_GSO=0
  if command -v ethtool >/dev/null 2>&1 || [ -x /usr/sbin/ethtool ]; then
    ip netns exec "$NS" "$(command -v ethtool || echo /usr/sbin/ethtool)" -K vr0 tso off gso off >/dev/null 2>&1 &&
      SOFT_GSO=1
  fi
}

# ns_delete NS: stop by PID whatever still runs in NS (only this script starts anything
# there), then delete it. Nothing happens if NS does not exist.
ns_delete() {
  local ns=$1 pids
  ip netns list 2>/dev/null | grep -qw "^$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086  # one PID per word
    kill $pids 2>/dev/null; sleep 0.5
    pids=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  fi
  ip netns del "$ns" 2>/dev/null || say "could not delete namespace $ns"
}

# ------------------------------------------------------------------ processes

# stop_pid PID [WHAT]: SIGTERM, up to 5 s, then SIGKILL (saying so if WHAT is given), then
# reap it. Only for a PID this script started; an empty PID is a no-op.
stop_pid() {
  local p=$1
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      [ -n "${2:-}" ] && say "$2 $p ignored SIGTERM for 5 s, sending SIGKILL"
      kill -9 "$p" 2>/dev/null
    fi
  fi
  wait "$p" 2>/dev/null
  return 0
}

stop_server() { stop_pid "$SERVER_PID" server; SERVER_PID=; }

# cleanup (the EXIT trap, see set_traps): ON_CLEANUP, the server, the namespaces, TMPD; keeps
# the exit status.
cleanup() {
  local rc=$? f ns
  set +e
  trap - EXIT INT TERM
  for f in "${ON_CLEANUP[@]}"; do "$f"; done
  stop_server
  for ns in "${CLEANUP_NS[@]}"; do ns_delete "$ns"; done
  [ "$CLEANUP_REAP" = 1 ] && wait 2>/dev/null
  [ -n "$TMPD" ] && rm -rf "$TMPD"
  exit "$rc"
}

# set_traps: a fresh TMPD, cleanup on exit, Ctrl-C exits 130 and SIGTERM 143 (through cleanup).
set_traps() {
  TMPD=$(mktemp -d)
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# wait_up NS PID URL TRIES [CONNECT MAX]: until URL answers from inside NS, polling TRIES
# times 0.2 s apart (curl --connect-timeout CONNECT --max-time MAX, default 1 and 2).
# 0: it answered; 1: PID exited first (its status in UP_STATUS); 2: no answer.
UP_STATUS=
wait_up() {
  local ns=$1 pid=$2 url=$3 tries=$4 ct=${5:-1} mt=${6:-2}
  for _ in $(seq 1 "$tries"); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; UP_STATUS=$?; return 1; fi
    ip netns exec "$ns" curl -s --noproxy '*' -o /dev/null --connect-timeout "$ct" --max-time "$mt" "$url" && return 0
    sleep 0.2
  done
  return 2
}

# start_server [ARGS...]: $BIN --tap $TAP ARGS inside $NS, output to $LOG, RUST_LOG default
# info; SERVER_PID is its PID (`ip netns exec` execs the command).
# shellcheck disable=SC2120  # ARGS are optional
start_server() {
  RUST_LOG=${RUST_LOG:-info} ip netns exec "$NS" "$BIN" --tap "$TAP" "$@" >"$LOG" 2>&1 &
  SERVER_PID=$!
}

# server_up URL TRIES SECONDS [CONNECT MAX]: wait_up for the server; when it does not come
# up, say why on stderr with the last 20 lines of $LOG and return 1.
server_up() {
  local url=$1 tries=$2 secs=$3
  shift 3
  wait_up "$NS" "$SERVER_PID" "$url" "$tries" "$@"
  case $? in
    0) say "server up (pid $SERVER_PID)"; return 0 ;;
    1) SERVER_PID=; echo "$PROG: server exited early (status $UP_STATUS); log:" >&2 ;;
    *) echo "$PROG: server not answering $BASE/ after $secs s; log:" >&2 ;;
  esac
  tail -n 20 "$LOG" >&2
  return 1
}

# ------------------------------------------------------------------ checks

section() { echo; echo "# $*"; }

# report NAME STATUS OUTPUT: count a check and print `ok   - NAME` (and OUTPUT's "info: "
# lines), `skip - NAME` (STATUS 77; the reason indented) or `FAIL - NAME` (OUTPUT indented).
report() {
  local name=$1 rc=$2 out=$3
  if [ "$rc" -eq 0 ]; then
    PASS=$((PASS + 1)); echo "ok   - $name"
    # A passing check may still leave a one-line note: lines starting with "info: ".
    printf '%s\n' "$out" | sed -n 's/^info: /       /p'
  elif [ "$rc" -eq 77 ]; then
    SKIP=$((SKIP + 1)); echo "skip - $name"
    [ -n "$out" ] && printf '%s\n' "$out" | head -n 20 | sed 's/^info: //; s/^/       /'
  else
    FAIL=$((FAIL + 1)); echo "FAIL - $name"
    [ -n "$out" ] && printf '%s\n' "$out" | head -n 20 | sed 's/^/       /'
  fi
  return 0
}

# check NAME CMD...: run CMD in a subshell and report it (CMD prints details and returns
# non-zero on failure, 77 for skipped).
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1); rc=$?
  report "$name" "$rc" "$out"
}

# check_here NAME CMD...: the same, but CMD runs in this shell (it may start processes and
# set variables); its output goes through $TMPD/check.out.
check_here() {
  local name=$1 rc
  shift
  "$@" >"$TMPD/check.out" 2>&1; rc=$?
  report "$name" "$rc" "$(cat "$TMPD/check.out")"
}

# finish: print `N passed, M failed` (`, K skipped` when some were); exit 1 (after on_fail,
# if defined) when a check failed, else 0.
finish() {
  if [ "$SKIP" -gt 0 ]; then echo "$PASS passed, $FAIL failed, $SKIP skipped"; else echo "$PASS passed, $FAIL failed"; fi
  if [ "$FAIL" -gt 0 ]; then
    declare -F on_fail >/dev/null && on_fail
    exit 1
  fi
  exit 0
}

# t_no_panic: the server ($SERVER_PID) still runs and its log ($LOG) has no panic.
t_no_panic() {
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "server is gone"; tail -n 10 "$LOG"; return 1; }
  if grep -q 'panicked' "$LOG"; then grep -m3 'panicked' "$LOG"; return 1; fi
}
