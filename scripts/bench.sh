#!/usr/bin/env bash
# bench.sh [--quick] — smolhttpd side by side with nginx and `python3 -m http.server`.
#
# Run as root. Everything happens inside network namespaces this script creates and deletes:
#
#   smolhttpd   namespace sbench-tap-PID: tap0, kernel side 192.168.69.100 (wrk, curl),
#               smoltcp side 192.168.69.1 (the server, a user-space stack behind the tap)
#   nginx,      namespace sbench-srv-PID (server, veth 192.168.69.1) <-> veth pair <->
#   python      namespace sbench-cli-PID (wrk, curl, veth 192.168.69.100)
#
# So every client talks to http://192.168.69.1/ and nothing leaves the namespaces. Every load is
# bounded in time (wrk -d, curl --max-time, `timeout` around each). wrk runs unpinned (server
# and client share the cores the same way for each server). For the 10 MB downloads, on a
# machine with 2 or more CPUs, every server's threads are pinned to CPU 0 and curl to CPU 1
# while they run (taskset), the same for all three servers: one TCP stream is a pipeline of two
# processes, and when the scheduler puts both on one core smolhttpd's tap figure at MTU 1500
# halves (seen here: ~415 MB/s on two cores, ~225 MB/s on one, unpinned runs land on either).
#
# The served files, the same for all three servers (generated into target/bench/image, rewritten
# only when their bytes would change, so the bench build stays cached):
#   /index.html  exactly 1024 bytes of HTML: the "1 KB home page" (not fs_image/index.html,
#                which is 2.7 KB)
#   /100k.bin    102,400 random bytes      /10m.bin  10,485,760 random bytes (Python's
#                random.Random(7): the same bytes on every machine)
# smolhttpd is built with that folder as its image (SMOLHTTPD_FS_IMAGE) into its own target dir
# (target/bench/cargo-image), and with the default image into target/bench/cargo-default for the
# RSS target, so the normal target/ build is not touched. The RSS target is also measured on a
# static musl build with the default image (scripts/build-static.sh, into target/bench/cargo-static;
# it installs the musl target and musl-tools when missing): no libc.so/ld.so pages. When that
# build cannot be made, its row is "-" and the target is checked on the glibc build.
#
# Rounds: the servers take turns, ROUNDS times (smolhttpd, smolhttpd --no-offload, nginx,
# python, smolhttpd, ...), each started fresh per round, so a slow minute on a shared machine
# lands on all of them. Every figure is the median over the rounds (downloads: over every
# download of every round) and is printed with its spread (min-max).
#
# Per server and round: wrk -t2 -c10 -dD --latency on the 1 KB file with keep-alive and with
# `Connection: close`, on the 100 KB file with keep-alive (plus requests per connection: wrk's
# requests over the connections the client's kernel opened, since wrk reconnects silently when
# a server drops keep-alive); during each wrk run the servers' CPU time (user + system of
# every thread, /proc/PID/task/*/schedstat; nginx: master + workers) and, with perf, their
# system calls (raw_syscalls:sys_enter), each divided by the requests; the 10 MB file with
# curl (one checked warm-up, then N downloads, %{speed_download}); then VmRSS/RssAnon and CPU
# use while idle. Then the 10 MB download at MTU 9000 and 65000 (tap or veth MTU set with
# `ip link set mtu`, smolhttpd started with the same --mtu; "+buf" means smolhttpd runs with
# --tx-buffer 1048576 --rx-buffer 65536, nginx keeps the kernel's autotuned buffers),
# smolhttpd and nginx taking turns the same way.
#
# Modes: full (default): 3 rounds, wrk -d5s, 3 downloads a round, 3 s idle (about 6 minutes
#                        plus the build).
#        --quick:        3 rounds, wrk -d2s, 2 downloads a round, 1 s idle (about 4 minutes).
#
# Output: the table on stdout and in target/bench/results.txt, target/bench/results.csv, the
# chart target/bench/chart.png (scripts/bench/chart.gp), raw wrk/curl/server logs under
# target/bench/logs/. Progress goes to stderr.
#
# Exit status: 0 when every run worked (targets that are missed are reported as MISS, not as a
# failure); 1 when a run failed (a server did not start or died, wrk failed or saw non-2xx
# answers or socket errors on more than 1% of requests, a download was short or wrong);
# 2 for a setup problem (not root, install or build failed).
#
# Env: BENCH_OUT        output folder (default target/bench)
#      BENCH_WAIT_QUIET  wait up to this many seconds for the CPUs to be under 10% busy before
#                        measuring (other work on the machine skews every figure); default 0
#      SMOLHTTPD_BENCH_BIN, SMOLHTTPD_DEFAULT_BIN, SMOLHTTPD_STATIC_BIN  use these binaries
#                        (bench image, default image, default image static) instead of building them
#      RUST_LOG          for smolhttpd; default warn: no line per request (nginx: access_log off)
# shellcheck disable=SC2317  # cleanup runs from the trap
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

QUICK=0
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,/^# shellcheck/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done
ROUNDS=3
if [ "$QUICK" = 1 ]; then DUR=2; CURL_RUNS=2; IDLE=1; MODE=quick; else DUR=5; CURL_RUNS=3; IDLE=3; MODE=full; fi

OUT=${BENCH_OUT:-target/bench}
NS_T=sbench-tap-$$
NS_S=sbench-srv-$$
NS_C=sbench-cli-$$
BIG_BUF=(--tx-buffer 1048576 --rx-buffer 65536)
SIZE_10M=10485760

SMOL_PID=
NGINX_PID=
PY_PID=
FAILS=()
NOTES=()
declare -A V=()    # V[key:server] = the values of every round, space-separated
T_START=$(date +%s)

put() { V["$1:$2"]="${V["$1:$2"]:-}${V["$1:$2"]:+ }$3"; }   # put KEY SERVER VALUE: one more run
median() { # median VALUES...: the median (mean of the middle two for an even count)
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR) printf "%.6g", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

say() { echo "bench: $*" >&2; }
fail() { FAILS+=("$*"); echo "bench: FAILED: $*" >&2; }
note() { NOTES+=("$*"); echo "bench: note: $*" >&2; }

need_root "network namespaces, tap, veth"

# ------------------------------------------------------------------ packages

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
missing=()
for pair in wrk:wrk nginx:nginx-light python3:python3 gnuplot:gnuplot-nox curl:curl ip:iproute2 perf:linux-perf \
            timeout:coreutils awk:gawk ps:procps; do
  have "${pair%%:*}" || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  say "installing: ${missing[*]}"
  # Installing nginx must not start the distribution's nginx service outside our namespaces.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  { timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"/tmp/bench-apt-$$.log" 2>&1
  rc=$?
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" -eq 0 ] || { tail -n 20 "/tmp/bench-apt-$$.log" >&2; die "apt-get install ${missing[*]} failed"; }
  rm -f "/tmp/bench-apt-$$.log"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# The real interpreter, not a version manager's shell shim in front of it.
PY=$(python3 -c 'import sys; print(sys.executable)') || die "python3 does not run"

# ------------------------------------------------------------------ image and build

mkdir -p "$OUT/logs" || die "cannot create $OUT"
OUT=$(realpath "$OUT")
IMG=$OUT/image
LOGD=$OUT/logs
rm -f "$LOGD"/*.txt "$LOGD"/*.log 2>/dev/null

"$PY" - "$IMG" <<'EOF' || die "could not write the image folder"
import os, random, sys
root = sys.argv[1]
os.makedirs(root, exist_ok=True)

def put(name, data):
    path = os.path.join(root, name)
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return          # unchanged: keep the mtime, so cargo does not rebuild
    except FileNotFoundError:
        pass
    with open(path, "wb") as f:
        f.write(data)

head = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<title>smolhttpd bench: 1 KB home page</title>\n</head>\n<body>\n'
        '<h1>smolhttpd bench</h1>\n<p>This page is exactly 1024 bytes long.</p>\n<p>')
tail = '</p>\n</body>\n</html>\n'
words = "the quick brown fox jumps over the lazy dog "
fill = (words * 40)[: 1024 - len(head) - len(tail)]
page = (head + fill + tail).encode()
assert len(page) == 1024, len(page)
put("index.html", page)
rng = random.Random(7)
put("100k.bin", rng.randbytes(102400))
put("10m.bin", rng.randbytes(10485760))
EOF
chmod 755 "$IMG" && chmod 644 "$IMG"/*

find_cargo() {
  local c
  c=$(command -v cargo 2>/dev/null) && { echo "$c"; return; }
  for c in "$HOME/.cargo/bin/cargo" "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)/.cargo/bin/cargo"; do
    [ -x "$c" ] && { echo "$c"; return; }
  done
  return 1
}

build() { # build TARGET_DIR IMAGE_OR_EMPTY -> prints the binary path
  local dir=$1 img=$2 cargo log
  log=$LOGD/build-${1##*/}.log
  cargo=$(find_cargo) || die "cargo not found (install rustup), or set SMOLHTTPD_BENCH_BIN/SMOLHTTPD_DEFAULT_BIN"
  say "cargo build --release --bin smolhttpd (CARGO_TARGET_DIR=${dir#"$ROOT/"}${img:+, SMOLHTTPD_FS_IMAGE=${img#"$ROOT/"}})"
  if [ -n "$img" ]; then
    SMOLHTTPD_FS_IMAGE=$img CARGO_TARGET_DIR=$dir timeout 1200 "$cargo" build --release --bin smolhttpd >"$log" 2>&1
  else
    env -u SMOLHTTPD_FS_IMAGE CARGO_TARGET_DIR="$dir" timeout 1200 "$cargo" build --release --bin smolhttpd >"$log" 2>&1
  fi || { tail -n 30 "$log" >&2; die "build failed (log: $log)"; }
  echo "$dir/release/smolhttpd"
}
if [ -n "${SMOLHTTPD_BENCH_BIN:-}" ]; then BIN=$SMOLHTTPD_BENCH_BIN; else BIN=$(build "$OUT/cargo-image" "$IMG") || exit 2; fi
if [ -n "${SMOLHTTPD_DEFAULT_BIN:-}" ]; then BIN_DEF=$SMOLHTTPD_DEFAULT_BIN; else BIN_DEF=$(build "$OUT/cargo-default" "") || exit 2; fi
{ [ -x "$BIN" ] && [ -x "$BIN_DEF" ]; } || die "smolhttpd binaries missing: $BIN $BIN_DEF"
# The static (musl) build with the default image is optional: without it the row says "-".
build_static() { # -> prints the binary path
  local cargo log=$LOGD/build-cargo-static.log dir=$OUT/cargo-static
  cargo=$(find_cargo) || { echo "cargo not found" >"$log"; return 1; }
  say "scripts/build-static.sh (CARGO_TARGET_DIR=${dir#"$ROOT/"})"
  env -u SMOLHTTPD_FS_IMAGE PATH="$(dirname "$cargo"):$PATH" CARGO_TARGET_DIR="$dir" \
    timeout 1200 scripts/build-static.sh 2>"$log"
}
if [ -n "${SMOLHTTPD_STATIC_BIN:-}" ]; then BIN_STATIC=$SMOLHTTPD_STATIC_BIN
elif ! BIN_STATIC=$(build_static); then
  BIN_STATIC=
  tail -n 5 "$LOGD/build-cargo-static.log" >&2
  note "no static (musl) build: $(tail -n 1 "$LOGD/build-cargo-static.log") (log: ${LOGD#"$ROOT/"}/build-cargo-static.log); the RSS target is checked on the glibc build"
fi
[ -z "$BIN_STATIC" ] || [ -x "$BIN_STATIC" ] || die "SMOLHTTPD_STATIC_BIN=$BIN_STATIC is not an executable file"

# ------------------------------------------------------------------ namespaces

CURL_LIMITS=(--connect-timeout 5 --max-time 60)   # for ns_curl (lib.sh)

stop_servers() { stop_pid "$SMOL_PID" pid; stop_pid "$NGINX_PID" pid; stop_pid "$PY_PID" pid; }
ON_CLEANUP=(stop_servers)   # lib.sh's cleanup: these, then the namespaces and TMPD
set_traps

ns_client_sysctls() { # many short connections: reuse TIME-WAIT ports, wide port range (per netns);
  # no TCP metrics kept between connections, so one round's runs do not steer the next round's.
  ns_exec "$1" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000" \
    net.ipv4.tcp_no_metrics_save=1 >/dev/null
}
for ns in "$NS_T" "$NS_S" "$NS_C"; do
  make_ns "$ns" || die "ip netns add $ns failed"
done
MTU=1500 ns_exec "$NS_T" scripts/tap-up.sh tap0 >/dev/null || die "tap-up.sh in $NS_T failed"
ip -n "$NS_S" link add vb-s type veth peer name vb-c netns "$NS_C" || die "veth pair failed"
ip -n "$NS_S" addr add "$SERVER_IP/24" dev vb-s
ip -n "$NS_C" addr add 192.168.69.100/24 dev vb-c
ip -n "$NS_S" link set vb-s up
ip -n "$NS_C" link set vb-c up
ns_client_sysctls "$NS_T"; ns_client_sysctls "$NS_C"

set_mtu_tap() { ip -n "$NS_T" link set dev tap0 mtu "$1"; }
set_mtu_veth() { ip -n "$NS_S" link set dev vb-s mtu "$1" && ip -n "$NS_C" link set dev vb-c mtu "$1"; }

# ------------------------------------------------------------------ servers

wait_ready() { # wait_ready NAME PID NS: up to ~10 s for GET /index.html to answer
  local name=$1 pid=$2 ns=$3
  wait_up "$ns" "$pid" "$BASE/index.html" 50
  case $? in
    0) return 0 ;;
    1) fail "$name exited at start (status $UP_STATUS); log in $LOGD" ;;
    *) fail "$name not answering $BASE/index.html after 10 s" ;;
  esac
  return 1
}

start_smol() { # start_smol LOGNAME BINARY ARGS...
  local name=$1 bin=$2
  shift 2
  say "start smolhttpd $* (namespace $NS_T)"
  # `ip netns exec` execs the command, so $! is the server's own PID.
  RUST_LOG=${RUST_LOG:-warn} ip netns exec "$NS_T" "$bin" --tap tap0 "$@" >"$LOGD/$name.log" 2>&1 &
  SMOL_PID=$!
  wait_ready "smolhttpd ($*)" "$SMOL_PID" "$NS_T" || { stop_pid "$SMOL_PID" pid; SMOL_PID=; return 1; }
}
stop_smol() {
  stop_pid "$SMOL_PID" pid; SMOL_PID=
  local w
  w=$(grep -cE '(WARN|ERROR)' "$LOGD"/smol*.log 2>/dev/null | awk -F: '{s += $NF} END {print s + 0}')
  SMOL_WARNINGS=$w
}
SMOL_WARNINGS=0

start_nginx() {
  local d=$TMPD/nginx
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
# The peer: Debian's nginx, 2 workers, sendfile, keep-alive, no access log.
user root root;
worker_processes 2;
pid $d/nginx.pid;
error_log $LOGD/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  types { text/html html; application/octet-stream bin; }
  default_type application/octet-stream;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  server {
    listen $SERVER_IP:80;
    root $IMG;
    index index.html;
  }
}
EOF
  say "start nginx (2 workers, namespace $NS_S)"
  ip netns exec "$NS_S" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$LOGD/nginx-error.log" -g 'daemon off;' \
    >"$LOGD/nginx.log" 2>&1 &
  NGINX_PID=$!
  wait_ready nginx "$NGINX_PID" "$NS_C" || { stop_pid "$NGINX_PID" pid; NGINX_PID=; return 1; }
}
stop_nginx() { stop_pid "$NGINX_PID" pid; NGINX_PID=; }

start_python() {
  say "start $PY -m http.server (namespace $NS_S)"
  ip netns exec "$NS_S" "$PY" -m http.server 80 --bind "$SERVER_IP" --directory "$IMG" >"$LOGD/python.log" 2>&1 &
  PY_PID=$!
  wait_ready python "$PY_PID" "$NS_C" || { stop_pid "$PY_PID" pid; PY_PID=; return 1; }
}
stop_python() { stop_pid "$PY_PID" pid; PY_PID=; }

# ------------------------------------------------------------------ measurements

# pid_tree PID: PID and its direct children (nginx's workers).
pid_tree() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }
sum_status() { # sum_status FIELD PIDS...: sum of a /proc/PID/status field, kB
  local f=$1 p s=0 v
  shift
  for p in "$@"; do
    v=$(awk -v f="$f:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
sum_ticks() { # sum_ticks PIDS...: utime + stime, clock ticks
  local p s=0 v
  for p in "$@"; do
    # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
    s=$((s + ${v:-0}))
  done
  echo "$s"
}

sum_cpu_ns() { # sum_cpu_ns PIDS...: time on CPU of every thread, ns (/proc/PID/task/*/schedstat)
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{s += $1} END {printf "%.0f", s}'
}

# alive NAME PID: fail (once) if the server process is gone.
alive() { kill -0 "$2" 2>/dev/null && return 0; fail "$1 died during the benchmark (log in $LOGD)"; return 1; }

to_ms() { # wrk duration (123.00us, 1.23ms, 2.00s, 1.00m) -> ms
  awk -v d="$1" 'BEGIN {
    if (d ~ /us$/) { sub(/us$/, "", d); printf "%.4f", d / 1000 }
    else if (d ~ /ms$/) { sub(/ms$/, "", d); printf "%.4f", d }
    else if (d ~ /m$/) { sub(/m$/, "", d); printf "%.4f", d * 60000 }
    else if (d ~ /s$/) { sub(/s$/, "", d); printf "%.4f", d * 1000 } }'
}

# tcp_opens NS: connections the namespace's kernel has opened (Tcp ActiveOpens). The client
# namespaces hold only the clients' TCP (smolhttpd's stack is in user space), so the change over
# a wrk run is the connections wrk made: wrk reconnects silently when a server closes a
# keep-alive connection, so this is the only way to see it.
# shellcheck disable=SC2016  # awk program, not shell
tcp_opens() { ip netns exec "$1" awk '/^Tcp:/ && $6 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }

# wrk_run SERVER NS PID KEY URL [WRK ARGS...]: one run's requests/s, p50, p99, requests per
# connection, and the server's CPU time and system calls per request.
wrk_run() {
  local srv=$1 ns=$2 pid=$3 key=$4 url=$5 f rc rps reqs p50 p99 serr non2xx c0 c1 rpc pids cpu0 cpu1 perf_pid= sys=
  shift 5
  f=$LOGD/wrk-$srv-$key-r$ROUND.txt
  say "$srv: wrk -t2 -c10 -d${DUR}s --latency $* $url (round $ROUND)"
  mapfile -t pids < <(pid_tree "$pid")
  if have perf; then
    perf stat -x, -e raw_syscalls:sys_enter -p "$(IFS=,; echo "${pids[*]}")" -o "$TMPD/perf" &
    perf_pid=$!
    sleep 0.2
  fi
  c0=$(tcp_opens "$ns"); cpu0=$(sum_cpu_ns "${pids[@]}")
  timeout $((DUR + 30)) ip netns exec "$ns" wrk -t2 -c10 -d"${DUR}s" --latency --timeout 2s "$@" "$url" >"$f" 2>&1
  rc=$?
  c1=$(tcp_opens "$ns"); cpu1=$(sum_cpu_ns "${pids[@]}")
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null
    sys=$(awk -F, '/raw_syscalls:sys_enter/ && $1 ~ /^[0-9]+$/ {print $1}' "$TMPD/perf")
  fi
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
  reqs=$(awk '/ requests in / {print $1}' "$f")
  p50=$(awk '$1 == "50%" {print $2}' "$f")
  p99=$(awk '$1 == "99%" {print $2}' "$f")
  serr=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$f")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
  if [ "$rc" -ne 0 ] || [ -z "$rps" ] || [ "${reqs:-0}" = 0 ]; then
    fail "$srv $key: wrk exit $rc, ${reqs:-no} requests ($f): $(tail -n 3 "$f" | tr '\n' ' ')"
    alive "$srv" "$pid"
    return 1
  fi
  put "${key}_rps" "$srv" "$rps"
  put "${key}_p50" "$srv" "$(to_ms "$p50")"
  put "${key}_p99" "$srv" "$(to_ms "$p99")"
  put "${key}_cpu" "$srv" "$(awk -v a="$cpu0" -v b="$cpu1" -v r="$reqs" 'BEGIN {printf "%.3f", (b - a) / 1e3 / r}')"
  # perf counts from its start, 0.2 s before wrk: an idle server makes no calls meanwhile.
  [ -n "$sys" ] && put "${key}_sys" "$srv" "$(awk -v c="$sys" -v r="$reqs" 'BEGIN {printf "%.3f", c / r}')"
  rpc=$(awk -v r="$reqs" -v c=$((c1 - c0)) 'BEGIN {if (c > 0) printf "%.1f", r / c}')
  [ -n "$rpc" ] && put "${key}_rpc" "$srv" "$rpc"
  echo "(bench.sh) connections opened by the client: $((c1 - c0)), requests per connection: ${rpc:-?}; server CPU $(((cpu1 - cpu0) / 1000000)) ms, system calls ${sys:-?}" >>"$f"
  if [ -n "$rpc" ] && [ "$srv" != python ]; then
    case $key in
      close) awk -v r="$rpc" 'BEGIN {exit !(r > 1.05)}' && note "$srv $key: $rpc requests per connection with Connection: close (should be 1)" ;;
      *) awk -v r="$rpc" 'BEGIN {exit !(r < 2)}' &&
           note "$srv $key: only $rpc requests per connection: the server closed keep-alive connections ($((c1 - c0)) connections for $reqs requests; wrk reconnects without counting an error)" ;;
    esac
  fi
  if [ "${non2xx:-0}" != 0 ]; then fail "$srv $key: $non2xx non-2xx/3xx answers of $reqs ($f)"; fi
  if [ "${serr:-0}" != 0 ]; then
    local line
    line=$(grep 'Socket errors' "$f" | sed 's/^ *//')
    if [ $((serr * 100)) -gt "$reqs" ]; then fail "$srv $key: $line of $reqs requests ($f)"
    else note "$srv $key: $line of $reqs requests"; fi
  fi
  alive "$srv" "$pid"
}

# curl_mbs SERVER NS PID KEY: checked warm-up download of /10m.bin, then the median MB/s of N.
# pin SERVER_PID CPUS: every thread of the server and its children on CPUS (a taskset list).
pin() { local p; for p in $(pid_tree "$1"); do taskset -a -p -c "$2" "$p" >/dev/null 2>&1; done; }
ALL_CPUS=0-$(($(nproc) - 1))
if [ "$(nproc)" -ge 2 ] && have taskset; then PIN=1; else PIN=0; fi

curl_mbs() {
  local srv=$1 ns=$2 pid=$3 key=$4 f out code size speed i
  f=$LOGD/curl-$srv-$key.txt
  say "$srv: 10 MB x $CURL_RUNS ($key, round $ROUND)"
  if [ "$PIN" = 1 ]; then
    pin "$pid" 0
    local CURL_PREFIX=(taskset -c 1)
  else
    local CURL_PREFIX=()
  fi
  code=$(ns_curl "$ns" -o "$TMPD/dl" -w '%{http_code}' "$BASE/10m.bin" 2>>"$f")
  if [ "$code" != 200 ] || ! cmp -s "$TMPD/dl" "$IMG/10m.bin"; then
    fail "$srv $key: warm-up download of /10m.bin: status ${code:-none}, $(stat -c %s "$TMPD/dl" 2>/dev/null || echo 0) bytes, $(cmp -s "$TMPD/dl" "$IMG/10m.bin" && echo same || echo not the same) bytes as the file"
    rm -f "$TMPD/dl"; alive "$srv" "$pid"; return 1
  fi
  rm -f "$TMPD/dl"
  for i in $(seq 1 "$CURL_RUNS"); do
    out=$(ns_curl "$ns" -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' "$BASE/10m.bin" 2>>"$f")
    echo "run $i: $out" >>"$f"
    read -r code size speed <<<"$out"
    if [ "$code" != 200 ] || [ "$size" != "$SIZE_10M" ]; then
      fail "$srv $key: run $i: status ${code:-none}, $size bytes ($f)"; alive "$srv" "$pid"; return 1
    fi
    put "$key" "$srv" "$(awk -v s="$speed" 'BEGIN {printf "%.1f", s / 1e6}')"
  done
  [ "$PIN" = 1 ] && pin "$pid" "$ALL_CPUS"
  alive "$srv" "$pid"
}

# rss_idle SERVER PID: VmRSS and RssAnon after the load, then CPU % over IDLE seconds of idle.
rss_idle() {
  local srv=$1 pid=$2 pids t0 t1
  alive "$srv" "$pid" || return 1
  sleep 1
  mapfile -t pids < <(pid_tree "$pid")
  local rss anon idle
  rss=$(sum_status VmRSS "${pids[@]}"); anon=$(sum_status RssAnon "${pids[@]}")
  t0=$(sum_cpu_ns "${pids[@]}"); sleep "$IDLE"; t1=$(sum_cpu_ns "${pids[@]}")
  idle=$(awk -v a="$t0" -v b="$t1" -v s="$IDLE" 'BEGIN {printf "%.4f", (b - a) / 1e9 / s * 100}')
  put rss "$srv" "$rss"; put rss_anon "$srv" "$anon"; put idle_cpu "$srv" "$idle"
  say "$srv: RSS $rss kB (anon $anon kB), idle CPU $idle% (pids ${pids[*]})"
}

measure6() { # measure6 SERVER NS PID: 1 KB keep-alive and 10 MB at MTU 1500 over IPv6
  local base=$BASE
  BASE="http://[fd69::1]"
  wrk_run "$1" "$2" "$3" ka6 "$BASE/index.html"
  curl_mbs "$1" "$2" "$3" m10_1500_6
  BASE=$base
}

measure() { # measure SERVER NS PID: the MTU 1500 block
  local srv=$1 ns=$2 pid=$3
  wrk_run "$srv" "$ns" "$pid" ka "$BASE/index.html"
  wrk_run "$srv" "$ns" "$pid" close "$BASE/index.html" -H 'Connection: close'
  wrk_run "$srv" "$ns" "$pid" k100 "$BASE/100k.bin"
  curl_mbs "$srv" "$ns" "$pid" m10_1500
  rss_idle "$srv" "$pid"
}

# CPU time the rest of the machine takes while we measure: all busy time (/proc/stat) minus this
# script and everything it waited for (bash `times`: servers, wrk, curl) and the softirq threads.
# snap_times runs `times` in this shell (a $(...) subshell's counters start at zero).
stat_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
snap_times() { times >"$TMPD/times"; }
times_secs() { awk '{for (i = 1; i <= NF; i++) {split($i, t, "m"); s += t[1] * 60 + t[2]}} END {printf "%.2f", s}' "$TMPD/times"; }
softirq_ticks() { local p s=0; for p in $(pgrep '^ksoftirqd/'); do s=$((s + $(sum_ticks "$p"))); done; echo "$s"; }
others_pct() { # others_pct "BUSY0 TOTAL0" OWN0 SOFT0 (after snap_times): % of CPU time used by other work
  local b1 own1 soft1
  b1=$(stat_ticks); own1=$(times_secs); soft1=$(softirq_ticks)
  awk -v a="$1" -v b="$b1" -v o0="$2" -v o1="$own1" -v s0="$3" -v s1="$soft1" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(a, x, " "); split(b, y, " "); busy = (y[1] - x[1]) / hz; tot = (y[2] - x[2]) / hz
    o = busy - (o1 - o0) - (s1 - s0) / hz; if (o < 0) o = 0
    printf "%.0f", (tot > 0) ? o * 100 / tot : 0 }'
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_busy() { # cpu_busy SECONDS: % of all CPUs busy over that time (from /proc/stat)
  local a b
  a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat); sleep "$1"
  b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = (y[1] - x[1]) + (y[2] - x[2]);
    printf "%.0f", (t > 0) ? (y[1] - x[1]) * 100 / t : 0}'
}
BUSY_START=$(cpu_busy 2)
if [ "${BENCH_WAIT_QUIET:-0}" -gt 0 ] && [ "$BUSY_START" -gt 10 ]; then
  say "CPUs ${BUSY_START}% busy: waiting up to ${BENCH_WAIT_QUIET} s for them to go under 10%"
  t_end=$(($(date +%s) + BENCH_WAIT_QUIET))
  while [ "$BUSY_START" -gt 10 ] && [ "$(date +%s)" -lt "$t_end" ]; do BUSY_START=$(cpu_busy 5); done
fi
[ "$BUSY_START" -gt 10 ] &&
  note "the CPUs were ${BUSY_START}% busy before the run (other work on the machine competes with the servers and wrk)"
snap_times; STAT0=$(stat_ticks); OWN0=$(times_secs); SOFT0=$(softirq_ticks)
say "mode $MODE: wrk -d${DUR}s, $CURL_RUNS curl runs, ${IDLE} s idle; load average $LOAD_START"

# rss_libs PID: resident kB of the process's libc.so and ld.so mappings (/proc/PID/smaps).
rss_libs() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {lib = ($6 ~ /\/(libc\.so|libc-[0-9.]+\.so|ld-linux[^\/]*\.so)[^\/]*$/)}
       lib && $1 == "Rss:" {s += $2} END {print s + 0}' "/proc/$1/smaps" 2>/dev/null
}

# rss_default KEY LOGNAME BINARY: RSS with the default image and configuration: every file of
# fs_image once, then 1 KB load; V[KEY:smolhttpd] (VmRSS), KEY_anon, KEY_file, KEY_libc, KEY_start.
rss_default() {
  local key=$1 name=$2 bin=$3 srv=smolhttpd-${2#smol-} f rel code
  start_smol "$name" "$bin" || return 1
  put "${key}_start" smolhttpd "$(sum_status VmRSS "$SMOL_PID")"
  say "$srv: GET every file of fs_image, then wrk on /"
  while IFS= read -r -d '' f; do
    rel=${f#fs_image}
    code=$(ns_curl "$NS_T" -o "$TMPD/dl" -w '%{http_code}' "$BASE$rel")
    if [ "$code" != 200 ] || ! cmp -s "$TMPD/dl" "$f"; then fail "$srv: GET $rel: status ${code:-none} or wrong bytes"; fi
  done < <(find fs_image -type f -print0 | sort -z)
  rm -f "$TMPD/dl"
  wrk_run "$srv" "$NS_T" "$SMOL_PID" "${name#smol-}" "$BASE/"
  if alive "$srv" "$SMOL_PID"; then
    sleep 1
    local rss anon
    rss=$(sum_status VmRSS "$SMOL_PID"); anon=$(sum_status RssAnon "$SMOL_PID")
    put "$key" smolhttpd "$rss"; put "${key}_anon" smolhttpd "$anon"
    put "${key}_file" smolhttpd "$(sum_status RssFile "$SMOL_PID")"
    put "${key}_libc" smolhttpd "$(rss_libs "$SMOL_PID")"
    say "$srv: RSS $rss kB (anon $anon kB)"
  fi
  stop_smol
}
jumbo() { # jumbo KEY MTU [SMOLHTTPD ARGS...]: the 10 MB download at MTU, smolhttpd then nginx
  local key=$1 mtu=$2
  shift 2
  set_mtu_tap "$mtu"
  if start_smol "smol-$key-r$ROUND" "$BIN" --mtu "$mtu" "$@"; then curl_mbs smolhttpd "$NS_T" "$SMOL_PID" "$key"; stop_smol; fi
  set_mtu_veth "$mtu"
  if start_nginx; then curl_mbs nginx "$NS_C" "$NGINX_PID" "$key"; stop_nginx; fi
}

# --- the rounds: every server in turn, fresh each time.
ROUND=0
for ROUND in $(seq 1 "$ROUNDS"); do
  say "round $ROUND of $ROUNDS"
  set_mtu_tap 1500; set_mtu_veth 1500
  if start_smol "smol-1500-r$ROUND" "$BIN"; then
    measure smolhttpd "$NS_T" "$SMOL_PID"; measure6 smolhttpd "$NS_T" "$SMOL_PID"; stop_smol
  fi
  if start_smol "smol-nooff-r$ROUND" "$BIN" --no-offload; then measure smol-nooff "$NS_T" "$SMOL_PID"; stop_smol; fi
  if start_nginx; then measure nginx "$NS_C" "$NGINX_PID"; stop_nginx; fi
  if start_python; then measure python "$NS_C" "$PY_PID"; stop_python; fi
  # RSS with the default image and configuration: the glibc build, then the static one.
  rss_default rss_default "smol-default-r$ROUND" "$BIN_DEF"
  [ -n "$BIN_STATIC" ] && rss_default rss_static "smol-static-r$ROUND" "$BIN_STATIC"
  # Jumbo frames: the 10 MB download, smolhttpd (offload off: the tap's MTU is the segment) then nginx.
  jumbo m10_9000 9000 --no-offload
  jumbo m10_9000b 9000 --no-offload "${BIG_BUF[@]}"
  jumbo m10_65000b 65000 --no-offload "${BIG_BUF[@]}"
done
ROUND=all

snap_times; OTHERS=$(others_pct "$STAT0" "$OWN0" "$SOFT0")
[ "$OTHERS" -gt 10 ] &&
  note "other work on the machine used about ${OTHERS}% of the CPU time during the measurements: figures are noisy; rerun on a quiet machine"
[ "$SMOL_WARNINGS" -gt 0 ] && note "smolhttpd logged $SMOL_WARNINGS WARN/ERROR lines (see $LOGD/smol-*.log)"

# ------------------------------------------------------------------ report

ROWS=(
  "ka_rps|1 KB keep-alive|req/s|0"
  "ka_p50|  latency p50|ms|3"
  "ka_p99|  latency p99|ms|3"
  "ka_cpu|  server CPU per request|us|2"
  "ka_sys|  system calls per request|calls|2"
  "ka_rpc|  requests per connection|req/c|1"
  "close_rps|1 KB Connection: close|req/s|0"
  "close_p50|  latency p50|ms|3"
  "close_p99|  latency p99|ms|3"
  "close_cpu|  server CPU per request|us|2"
  "close_sys|  system calls per request|calls|2"
  "k100_rps|100 KB keep-alive|req/s|0"
  "k100_cpu|  server CPU per request|us|1"
  "k100_sys|  system calls per request|calls|1"
  "k100_rpc|  requests per connection|req/c|1"
  "m10_1500|10 MB, MTU 1500|MB/s|0"
  "ka6_rps|1 KB keep-alive, IPv6|req/s|0"
  "m10_1500_6|10 MB, MTU 1500, IPv6|MB/s|0"
  "m10_9000|10 MB, MTU 9000, no offload|MB/s|0"
  "m10_9000b|10 MB, MTU 9000, no offload, +buf|MB/s|0"
  "m10_65000b|10 MB, MTU 65000, no offload, +buf|MB/s|0"
  "rss|RSS after load (VmRSS)|MiB|1"
  "rss_anon|  of which anonymous (RssAnon)|MiB|1"
  "idle_cpu|idle CPU, ${IDLE} s after load|%|3"
  "rss_default|RSS, default image and config|MiB|2"
  "rss_static|RSS, default image, static (musl)|MiB|2"
)
SERVERS=(smolhttpd smol-nooff nginx python)

unit() { case $1 in rss*) awk -v k="$2" 'BEGIN {printf "%.4f", k / 1024}' ;; *) echo "$2" ;; esac; }
val() { # val KEY SERVER: the median over the runs in its display unit (kB -> MiB), or empty
  local v=${V["$1:$2"]:-}
  [ -z "$v" ] && return 0
  # shellcheck disable=SC2086  # the runs, one per word
  unit "$1" "$(median $v)"
}
runs() { local v=${V["$1:$2"]:-}; set -- $v; echo $#; }   # runs KEY SERVER: how many values
spread() { # spread KEY SERVER DECIMALS: "min-max" over the runs in display units, or empty
  local v=${V["$1:$2"]:-} lo hi
  [ -z "$v" ] && return 0
  lo=$(printf '%s\n' $v | sort -g | head -n 1); hi=$(printf '%s\n' $v | sort -g | tail -n 1)
  echo "$(fmt "$(unit "$1" "$lo")" "$3")-$(fmt "$(unit "$1" "$hi")" "$3")"
}
fmt() { [ -z "$1" ] && { echo "-"; return; }; awk -v v="$1" -v d="$2" 'BEGIN {printf "%.*f", d, v}'; }
cell() { # cell KEY SERVER DECIMALS: "median (min-max)"
  local m
  m=$(val "$1" "$2")
  [ -z "$m" ] && { echo "-"; return; }
  if [ "$(runs "$1" "$2")" -gt 1 ]; then echo "$(fmt "$m" "$3") ($(spread "$1" "$2" "$3"))"; else fmt "$m" "$3"; fi
}
ratio() { [ -z "$1" ] || [ -z "$2" ] && { echo "-"; return; }; awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}'; }

GIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- src build.rs Cargo.toml Cargo.lock 2>/dev/null || GIT="$GIT+dirty"
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
nan() { [ -z "$1" ] && echo NaN || echo "$1"; }
{
  echo '# group smolhttpd nginx python'
  for k in "ka_rps|1 KB keep-alive" "close_rps|1 KB close" "k100_rps|100 KB keep-alive"; do
    echo "\"${k#*|}\" $(nan "$(val "${k%%|*}" smolhttpd)") $(nan "$(val "${k%%|*}" nginx)") $(nan "$(val "${k%%|*}" python)")"
  done
} >"$OUT/chart-rps.dat"
{
  echo '# group smolhttpd nginx python'
  for k in "m10_1500|MTU 1500" "m10_9000|MTU 9000" "m10_9000b|MTU 9000 +buf" "m10_65000b|MTU 65000 +buf"; do
    echo "\"${k#*|}\" $(nan "$(val "${k%%|*}" smolhttpd)") $(nan "$(val "${k%%|*}" nginx)") $(nan "$(val "${k%%|*}" python)")"
  done
} >"$OUT/chart-mbs.dat"
if ! gnuplot -e "rps='$OUT/chart-rps.dat'; mbs='$OUT/chart-mbs.dat'; out='$OUT/chart.png'; subtitle='$MODE run $(date -u '+%Y-%m-%d'), smolhttpd $GIT, $(nproc) CPUs, client on the same machine, medians of $ROUNDS rounds'" \
    scripts/bench/chart.gp 2>"$LOGD/gnuplot.log"; then
  cat "$LOGD/gnuplot.log" >&2
  fail "gnuplot failed (log: $LOGD/gnuplot.log)"
fi

REPORT=$OUT/results.txt
CSV=$OUT/results.csv
W=22
{
  echo "smolhttpd benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $MODE mode: $ROUNDS rounds, servers taking turns; wrk -t2 -c10 -d${DUR}s, $CURL_RUNS downloads a round"
  echo "every figure: median over the rounds (downloads: over all $((ROUNDS * CURL_RUNS)) of them), with (min-max)"
  echo "machine: $(nproc) CPUs ($CPU), Linux $(uname -r); load average at start $LOAD_START, CPUs ${BUSY_START}% busy just before;"
  echo "other work took ~${OTHERS}% of the CPU time while measuring; $([ "$PIN" = 1 ] && echo "10 MB downloads: server on CPU 0, curl on CPU 1; wrk unpinned" || echo "nothing pinned")"
  echo "smolhttpd $GIT (release, RUST_LOG=${RUST_LOG:-warn}, default flags: offload, tx 262144 / rx 4096 per slot) on a tap;"
  echo "smol-nooff: the same with --no-offload (tx 16384 per slot);"
  echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (2 workers, sendfile, access_log off) and python $("$PY" -c 'import platform; print(platform.python_version())') http.server on a veth pair"
  echo "files: /index.html 1024 B (generated 1 KB home page), /100k.bin 102400 B, /10m.bin 10485760 B; MB/s = 10^6 B/s"
  echo
  printf "%-36s %-6s %${W}s %${W}s %${W}s %${W}s %11s\n" metric unit smolhttpd smol-nooff nginx python smol/nginx
  printf "%-36s %-6s %${W}s %${W}s %${W}s %${W}s %11s\n" "$(printf '%.0s-' {1..36})" ------ "$(printf '%.0s-' $(seq $W))" "$(printf '%.0s-' $(seq $W))" "$(printf '%.0s-' $(seq $W))" "$(printf '%.0s-' $(seq $W))" -----------
  for r in "${ROWS[@]}"; do
    IFS='|' read -r key label unit dec <<<"$r"
    rt=$(ratio "$(val "$key" smolhttpd)" "$(val "$key" nginx)"); [[ $key == *_rpc ]] && rt=-
    printf "%-36s %-6s %${W}s %${W}s %${W}s %${W}s %11s\n" "$label" "$unit" "$(cell "$key" smolhttpd "$dec")" \
      "$(cell "$key" smol-nooff "$dec")" "$(cell "$key" nginx "$dec")" "$(cell "$key" python "$dec")" "$rt"
  done
  echo
  echo "requests per connection: wrk's requests / connections the client kernel opened; python's"
  echo "http.server speaks HTTP/1.0 and closes after every answer."
  echo "CPU per request: user + system time of the server's threads (nginx: master + workers) over"
  echo "the wrk run / requests; the kernel's work for the clients (wrk, and for smolhttpd the tap's"
  echo "host side) is not in it. System calls: perf's raw_syscalls:sys_enter on the same processes."
  echo "+buf: smolhttpd --tx-buffer 1048576 --rx-buffer 65536 (nginx keeps the kernel's autotuned buffers)."
  echo "RSS: nginx is master + 2 workers summed; smolhttpd's VmRSS includes the image pages it has served"
  echo "(the bench image holds the 10 MB file); the RSS target is checked on the default image and config"
  echo "after GETting every file of fs_image once and ${DUR} s of wrk on /; static (musl): the same"
  echo "on a statically linked build (scripts/build-static.sh), which maps no libc.so or ld.so."
  echo
  echo "targets (issues 7 and 15):"
  target() { # target NAME OK(1/0/empty) DETAIL
    local verdict=MISS
    [ "$2" = 1 ] && verdict=PASS
    [ -z "$2" ] && verdict="n/a "
    printf '  %s  %-46s %s\n' "$verdict" "$1" "$3"
  }
  cmp_ge() { [ -z "$1" ] || [ -z "$2" ] && return 0; awk -v a="$1" -v b="$2" 'BEGIN {print (a >= b) ? 1 : 0}'; }
  for k in ka_rps:ka6_rps m10_1500:m10_1500_6; do
    s4=$(val "${k%%:*}" smolhttpd); s6=$(val "${k#*:}" smolhttpd)
    target "smolhttpd ${k#*:} within 10% of ${k%%:*} (IPv6)" \
      "$([ -n "$s4" ] && [ -n "$s6" ] && awk -v a="$s6" -v b="$s4" 'BEGIN {print (a >= 0.9 * b) ? 1 : 0}')" \
      "$(fmt "$s6" 0) vs $(fmt "$s4" 0) over IPv4 ($(ratio "$s6" "$s4"))"
  done
  s=$(val ka_rps smolhttpd); n=$(val ka_rps nginx)
  n13=; [ -n "$n" ] && n13=$(awk -v n="$n" 'BEGIN {print n * 1.3}')
  ok=$(cmp_ge "$s" "$n13"); rpc=$(val ka_rpc smolhttpd); why=
  if [ -n "$rpc" ] && awk -v r="$rpc" 'BEGIN {exit !(r < 2)}'; then ok=0; why="; not kept alive: $rpc requests per connection"; fi
  target "1 KB keep-alive >= 1.3x nginx" "$ok" "$(ratio "$s" "$n") ($(fmt "$s" 0) vs $(fmt "$n" 0) req/s$why)"
  s=$(val close_rps smolhttpd); n=$(val close_rps nginx)
  target "1 KB Connection: close >= 1x nginx" "$(cmp_ge "$s" "$n")" "$(ratio "$s" "$n") ($(fmt "$s" 0) vs $(fmt "$n" 0) req/s)"
  s=$(val k100_rps smolhttpd); n=$(val k100_rps nginx)
  n08=; [ -n "$n" ] && n08=$(awk -v n="$n" 'BEGIN {print n * 0.8}')
  target "100 KB keep-alive >= 0.8x nginx" "$(cmp_ge "$s" "$n08")" "$(ratio "$s" "$n") ($(fmt "$s" 0) vs $(fmt "$n" 0) req/s; no offload $(fmt "$(val k100_rps smol-nooff)" 0))"
  s=$(val m10_1500 smolhttpd); n=$(val m10_1500 nginx)
  ok=$(cmp_ge "$s" 1000); [ "$ok" = 1 ] && ok=$(cmp_ge "$s" "$n")
  target "10 MB at MTU 1500 >= 1000 MB/s and >= nginx" "$ok" "$(fmt "$s" 0) vs $(fmt "$n" 0) MB/s (no offload $(fmt "$(val m10_1500 smol-nooff)" 0))"
  s=$(val m10_65000b smolhttpd); n=$(val m10_65000b nginx)
  target "10 MB at MTU 65000, +buf >= nginx" "$(cmp_ge "$s" "$n")" "$(ratio "$s" "$n") ($(fmt "$s" 0) vs $(fmt "$n" 0) MB/s)"
  s=${V["rss_default:smolhttpd"]:+$(median ${V["rss_default:smolhttpd"]})}
  st=${V["rss_static:smolhttpd"]:+$(median ${V["rss_static:smolhttpd"]})}
  glibc=; [ -n "$s" ] && glibc="$s kB"
  if [ -n "$st" ]; then
    target "RSS < 4 MiB, default image and config" "$(awk -v k="$st" 'BEGIN {print (k < 4096) ? 1 : 0}')" \
      "static musl $st kB (median); glibc build ${glibc:--}"
  else
    target "RSS < 4 MiB, default image and config" "$([ -n "$s" ] && awk -v k="$s" 'BEGIN {print (k < 4096) ? 1 : 0}')" \
      "$([ -n "$s" ] && echo "$s kB VmRSS (median)")"
  fi
  if ((${#NOTES[@]})); then
    echo
    echo "notes:"
    for x in "${NOTES[@]}"; do echo "  - $x"; done
  fi
  if ((${#FAILS[@]})); then
    echo
    echo "FAILED runs:"
    for x in "${FAILS[@]}"; do echo "  - $x"; done
  fi
  echo
  echo "load average at end $(cut -d' ' -f1-3 /proc/loadavg); took $(($(date +%s) - T_START)) s; raw logs in ${LOGD#"$ROOT/"}/"
} >"$REPORT"

{
  echo "key,metric,unit,server,median,min,max,runs"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r key label unit dec <<<"$r"
    label=${label#"${label%%[! ]*}"}
    for srv in "${SERVERS[@]}"; do
      m=$(val "$key" "$srv"); [ -z "$m" ] && continue
      sp=$(spread "$key" "$srv" 4)
      echo "$key,\"$label\",$unit,$srv,$m,${sp%-*},${sp#*-},$(runs "$key" "$srv")"
    done
  done
} >"$CSV"

cat "$REPORT"
echo "wrote ${REPORT#"$ROOT/"}, ${CSV#"$ROOT/"}, ${OUT#"$ROOT/"}/chart.png"
((${#FAILS[@]})) && exit 1
exit 0
