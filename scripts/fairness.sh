#!/usr/bin/env bash
# fairness.sh — ten slots that never stall, on a real tap with ordinary clients.
#
# Usage (as root; CI runs it):  sudo scripts/fairness.sh
#
# Inside a network namespace this script creates and deletes (smolhttpd-fair-PID): the tap,
# the release server and every client (curl, scripts/e2e/crowd.py and raw.py). Every client
# is bounded in time. Checks, each against the 10 slots:
#   - 40 keep-alive clients x 10 requests: all 400 answered within 3 s;
#   - 10 clients reading /video/Planeta.mp4 at 1 KB/s: a new curl of / served within 2 s,
#     three times in a row;
#   - 10 slow-header clients: a new curl served within 2 s;
#   - 10 idle keep-alive connections: a new client's connect time under 100 ms;
#   - a lone client reading /img/car.jpeg at 1 KB/s with nobody waiting: every byte;
#   - 30 concurrent downloads of /video/Planeta.mp4: all byte-exact;
#   - ab (ApacheBench) with 50 concurrent clients, five a slot, Connection: close and then
#     keep-alive: every request answered, none failed;
#   - 10 spoofed SYNs from on-link addresses nobody answers ARP for: a new curl within 2.5 s,
#     then the server's CPU under 10 % of a core within 12 s;
#   - 10 clients trickling a POST body a byte every 4 s: a new curl within 2.5 s;
#   - with offload, a SYN whose options are NOP, MSS 1460 (the value at an odd offset) gets a
#     SYN-ACK; a SYN announcing MSS 1, from a second namespace routed through the host, gets
#     no data segment below 400 bytes but the last (raw sockets: raw.py, which this script
#     writes to its temporary folder; nftables in that namespace drops its kernel's RSTs for
#     that one connection);
#   - the eviction counters in /status, and no panic.
# Needs ab (Debian: apt-get install apache2-utils; installed here with apt-get if missing) and
# nft (nftables) for the MSS 1 check (skipped without it).
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
start_server ${FAIR_SERVER_ARGS:-}
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

# ------------------------------------------------------------------ hand-built TCP
# raw.py: the clients the checks below need and curl cannot be (spoofed SYNs, SYN options,
# an MSS of 1, bodies trickled one byte at a time). Written to $TMPD, run inside $NS or
# $NS2 only.
write_raw_py() {
  cat >"$TMPD/raw.py" <<'EOF'
"""raw.py MODE ...: hand-built TCP for fairness.sh. Run it inside the test's namespaces only.

  spoof SERVER PORT PREFIX FIRST COUNT
      one SYN (MSS 1460) to SERVER:PORT from each of PREFIX.FIRST .. PREFIX.(FIRST+COUNT-1)
      (IPv4), or PREFIXFIRST.. in hex (IPv6, PREFIX like fd69::), on-link addresses nobody
      answers ARP or neighbour discovery for, through a raw socket.
  synack SRC SERVER PORT
      a SYN from SRC whose options are NOP, MSS 1460 (the value at an odd offset); exit 0 when
      a SYN-ACK comes back within 2 s (3 tries). The kernel resets the SYN-ACK; that is fine.
  mss1 SRC SERVER PORT SPORT PATH
      from SRC:SPORT a handshake whose SYN announces MSS 1, then GET PATH (Connection: close);
      reads the server's segments until its FIN (at most 5 s), acknowledges them with a FIN,
      prints `sizes=` the payload lengths in sequence order and `complete=0|1`. The caller
      drops the kernel's RSTs from SPORT (it knows no such connection).
  slowbody SERVER PORT CLIENTS SECONDS MARKER
      CLIENTS connections each send a POST /chat head with Content-Length 100, then one body
      byte every 4 s each, for at most SECONDS; MARKER is created once all heads are sent.
      Prints what came back.
"""
import random
import select
import signal
import socket
import struct
import sys
import time

SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def packet(src, dst, sport, dport, seq, ack, flags, window=65535, options=b"", payload=b""):
    thl = 20 + len(options)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (thl // 4) << 4, flags, window, 0, 0)
    tcp += options + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.randrange(65536), 0x4000,
                     64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return ip[:10] + struct.pack("!H", csum(ip)) + ip[12:] + tcp


def packet6(src, dst, sport, dport, seq, options):
    """An IPv6 SYN (hop limit 64) with valid checksum, header included."""
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    thl = 20 + len(options)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (thl // 4) << 4, SYN, 65535, 0, 0)
    tcp += options
    pseudo = s + d + struct.pack("!I3xB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + s + d + tcp


def sender():
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)


def sender6():
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IPV6, 36, 1)  # IPV6_HDRINCL: our header, our source
    return s


def receiver():
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return r


def segments(r, server, port, sport, until):
    """Yields (seq, ack, flags, payload) of segments from server:port to sport until `until`."""
    while True:
        left = until - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            return
        p = r.recv(70000)
        ihl = (p[0] & 15) * 4
        if socket.inet_ntoa(p[12:16]) != server:
            continue
        t = p[ihl:]
        sp, dp, seq, ack, off, flags = struct.unpack("!HHIIBB", t[:14])
        if sp == port and dp == sport:
            yield seq, ack, flags, t[(off >> 4) * 4:]


def syn_ack(r, s, pkt, server, port, sport, isn):
    """Sends pkt (a SYN) up to 3 times, 2 s apart; the server's ISN, or None."""
    for _ in range(3):
        s.sendto(pkt, (server, 0))
        for seq, ack, flags, _ in segments(r, server, port, sport, time.monotonic() + 2):
            if flags & (SYN | ACK) == SYN | ACK and ack == (isn + 1) & 0xFFFFFFFF:
                return seq
    return None


def spoof(server, port, prefix, first, count):
    if ":" in server:
        s = sender6()
        for i in range(int(count)):
            src = "%s%x" % (prefix, int(first, 16) + i)
            s.sendto(packet6(src, server, random.randrange(32768, 61000), int(port),
                             random.getrandbits(32), b"\x02\x04\x05\xa0"), (server, 0))
        print("sent %s SYNs from %s%s and on" % (count, prefix, first))
        return
    s = sender()
    for i in range(int(count)):
        src = "%s.%d" % (prefix, int(first) + i)
        pkt = packet(src, server, random.randrange(32768, 61000), int(port),
                     random.getrandbits(32), 0, SYN, options=b"\x02\x04\x05\xb4")
        s.sendto(pkt, (server, 0))
    print("sent %s SYNs from %s.%s-%d" % (count, prefix, first, int(first) + int(count) - 1))


def synack(src, server, port):
    port, sport, isn = int(port), random.randrange(32768, 61000), random.getrandbits(32)
    r, s = receiver(), sender()
    opts = b"\x01\x02\x04\x05\xb4\x01\x01\x01"  # NOP, MSS 1460 (value at offset 23), NOPs
    start = time.monotonic()
    got = syn_ack(r, s, packet(src, server, sport, port, isn, 0, SYN, options=opts),
                  server, port, sport, isn)
    if got is None:
        print("no SYN-ACK to a SYN with options NOP, MSS 1460 in 3 tries")
        sys.exit(1)
    print("SYN-ACK after %.3f s" % (time.monotonic() - start))


def mss1(src, server, port, sport, path):
    port, sport, isn = int(port), int(sport), random.getrandbits(32)
    r, s = receiver(), sender()
    srv = syn_ack(r, s, packet(src, server, sport, port, isn, 0, SYN, options=b"\x02\x04\x00\x01"),
                  server, port, sport, isn)
    if srv is None:
        print("no SYN-ACK to a SYN announcing MSS 1")
        sys.exit(1)
    req = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode()
    mine = (isn + 1) & 0xFFFFFFFF
    s.sendto(packet(src, server, sport, port, mine, (srv + 1) & 0xFFFFFFFF, PSH | ACK,
                    payload=req), (server, 0))
    data, fin = {}, None
    for seq, _, flags, payload in segments(r, server, port, sport, time.monotonic() + 5):
        off = (seq - srv - 1) & 0xFFFFFFFF
        if payload:
            data[off] = payload
        if flags & FIN:
            fin = off + len(payload)
        if flags & RST:
            break
        if fin is not None and sum(map(len, data.values())) >= fin:
            break
    sizes = [len(data[k]) for k in sorted(data)]
    body = b"".join(data[k] for k in sorted(data))
    head, _, rest = body.partition(b"\r\n\r\n")
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    complete = int(fin is not None and bool(length) and len(rest) == length[0])
    if fin is not None:
        s.sendto(packet(src, server, sport, port, (mine + len(req)) & 0xFFFFFFFF,
                        (srv + 2 + fin) & 0xFFFFFFFF, FIN | ACK), (server, 0))
    print("status=%s complete=%d segments=%d bytes=%d sizes=%s" % (
        head.split(b"\r\n")[0].decode("latin-1"), complete, len(sizes), len(body),
        ",".join(map(str, sizes))))


def slowbody(server, port, clients, seconds, marker):
    head = ("POST /chat HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 100\r\n\r\n" % server).encode()
    end = time.monotonic() + float(seconds)
    socks = []
    for _ in range(int(clients)):
        c = socket.create_connection((server, int(port)), timeout=5)
        c.sendall(head)
        socks.append(c)
    open(marker, "w").close()
    got = {c: b"" for c in socks}
    closed = set()
    sent = 0

    def stop(*_):
        raise TimeoutError

    signal.signal(signal.SIGTERM, stop)  # the caller is done: say what came back
    try:
        while time.monotonic() < end and sent < 100 and len(closed) < len(socks):
            tick = min(time.monotonic() + 4, end)
            while time.monotonic() < tick:
                live = [c for c in socks if c not in closed]
                for c in select.select(live, [], [], max(0, tick - time.monotonic()))[0]:
                    try:
                        b = c.recv(4096)
                    except OSError:
                        b = b""
                    got[c] += b
                    if not b:
                        closed.add(c)
            sent += 1
            for c in socks:
                if c not in closed:
                    try:
                        c.send(b"x")
                    except OSError:
                        closed.add(c)
    except TimeoutError:
        pass
    codes = [got[c].split(b" ", 2)[1].decode() if got[c].startswith(b"HTTP/") else "-" for c in socks]
    print("body bytes sent each=%d closed=%d statuses=%s" % (sent, len(closed), ",".join(codes)))


if __name__ == "__main__":
    {"spoof": spoof, "synack": synack, "mss1": mss1, "slowbody": slowbody}[sys.argv[1]](*sys.argv[2:])
EOF
}

# raw MODE ARGS...: raw.py inside $NS, bounded to 60 s.
raw() { in_ns timeout 60 python3 "$TMPD/raw.py" "$@"; }

# slots_listening: until /status shows every slot listening but the one asking (at most
# 20 s), so a check starts on an idle server whatever the one before it left.
slots_listening() {
  local busy
  for _ in $(seq 1 40); do
    busy=$(ncurl --max-time 2 "$BASE/status" 2>/dev/null |
      python3 -c 'import json,sys; print(sum(s["state"] != "listen" for s in json.load(sys.stdin)["slots"]))' 2>/dev/null)
    [ -n "$busy" ] && [ "$busy" -le 1 ] && return 0
    sleep 0.5
  done
  echo "info: slots still busy after 20 s ($busy)"
}

# cpu_ticks PID: utime + stime of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The new client's curl: a generous --max-time so a slow answer is measured, not cut; the
# checks assert on time_total. Linux retries a SYN after 1 s and again at 3 s: a bound of
# 2.5 s lets a held SYN be answered by its first retry on a slow machine, and fails a server
# that needed the second (or never answered).
NEWCOMER_LIMIT=2.5
newcomer() { ncurl --max-time 30 -o /dev/null -w '%{http_code} %{time_total}' "$BASE$1" || echo "000 fail"; }

t_spoofed_syns() {
  local out code t a b i pct rc=1
  slots_listening
  raw spoof "$SERVER_IP" "$PORT" "${SPOOF_PREFIX:-192.168.69}" 70 10 || return 1
  out=$(newcomer /text/text.htm); code=${out% *}; t=${out#* }
  echo "info: curl of /text/text.htm after 10 spoofed SYNs: $code in ${t} s"
  [ "$code" = 200 ] && within "$t" "$NEWCOMER_LIMIT" || return 1
  # The server goes back to sleep: at most 4 windows of 3 s, the first under 10 % passes.
  local hz; hz=$(getconf CLK_TCK)
  for i in 1 2 3 4; do
    a=$(cpu_ticks "$SERVER_PID") || return 1
    sleep 3
    b=$(cpu_ticks "$SERVER_PID") || return 1
    pct=$(awk -v d=$((b - a)) -v hz="$hz" 'BEGIN { printf "%.1f", d * 100 / hz / 3 }')
    echo "info: server CPU over 3 s window $i: ${pct} % of a core"
    if awk -v p="$pct" 'BEGIN { exit !(p < 10) }'; then rc=0; break; fi
  done
  return $rc
}

t_slow_bodies() {
  local pid out code t
  slots_listening
  rm -f "$TMPD/bodies"
  # Started without a shell function in between, so $! is the client (ip netns exec execs
  # timeout, which passes SIGTERM on) and stop_pid ends it.
  ip netns exec "$NS" timeout 60 python3 "$TMPD/raw.py" slowbody "$SERVER_IP" "$PORT" 10 30 "$TMPD/bodies" >"$TMPD/bodies.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do [ -e "$TMPD/bodies" ] && break; sleep 0.1; done
  [ -e "$TMPD/bodies" ] || { echo "the slow clients did not connect"; cat "$TMPD/bodies.out"; stop_pid "$pid"; return 1; }
  sleep 1   # past the body's 500 ms grace
  out=$(newcomer /index.html); code=${out% *}; t=${out#* }
  echo "info: curl of /index.html beside 10 slow bodies: $code in ${t} s"
  stop_pid "$pid"
  echo "info: the slow clients: $(cat "$TMPD/bodies.out")"
  [ "$code" = 200 ] && within "$t" "$NEWCOMER_LIMIT"
}

t_nop_mss() {
  local out rc
  slots_listening
  grep -q 'offload)' "$LOG" || { echo "info: the server runs without offload here"; return 77; }
  out=$(raw synack 192.168.69.100 "$SERVER_IP" "$PORT"); rc=$?
  echo "info: $out"
  return $rc
}

# t_mss_floor: from the routed namespace $NS2 (its wire cut to 1500-byte frames in software,
# as a real network would), a raw handshake whose SYN announces MSS 1, then GET /img/car.jpeg
# (14.6 KB, inside the 64 KB window the client advertises, so the whole response comes
# without an ACK). With offload the server writes it as one large segment and the kernel cuts
# it at gso_size on its way to $NS2: every data segment but the last must be at least 400
# bytes (the floor is 536; MSS 1 used to give one-byte segments). nftables in $NS2 drops
# that kernel's RSTs for the raw client's port while it runs.
t_mss_floor() {
  local sport out sizes small
  slots_listening
  grep -q 'offload)' "$LOG" || { echo "info: the server runs without offload here"; return 77; }
  [ "$ROUTED" = 1 ] || { echo "info: no routed namespace"; return 1; }
  [ "$SOFT_GSO" = 1 ] || { echo "info: ethtool not found: the kernel would not cut segments (apt-get install ethtool)"; return 77; }
  command -v nft >/dev/null 2>&1 || { echo "info: nft not found (apt-get install nftables)"; return 77; }
  sport=$((40000 + RANDOM % 20000))
  ip netns exec "$NS2" nft add table ip smolhttpd_fair &&
    ip netns exec "$NS2" nft add chain ip smolhttpd_fair out '{ type filter hook output priority 0; }' &&
    ip netns exec "$NS2" nft add rule ip smolhttpd_fair out ip daddr "$SERVER_IP" tcp sport "$sport" tcp flags '&' rst == rst drop ||
    return 1
  out=$(ip netns exec "$NS2" timeout 60 python3 "$TMPD/raw.py" mss1 10.69.2.2 "$SERVER_IP" "$PORT" "$sport" /img/car.jpeg)
  ip netns exec "$NS2" nft delete table ip smolhttpd_fair
  sizes=$(echo "$out" | sed -n 's/.* sizes=//p')
  echo "info: ${out% sizes=*}; payload sizes: $(echo "$sizes" | tr , '\n' | sort -n | uniq -c | awk '{ printf "%s%sx%s", (NR > 1 ? ", " : ""), $1, $2 }')"
  case $out in *"status=HTTP/1.1 200 OK complete=1"*) ;; *) echo "the response did not arrive whole"; return 1 ;; esac
  small=$(echo "$sizes" | tr , '\n' | head -n -1 | awk '$1 < 400' | wc -l)
  [ "$small" -eq 0 ] || { echo "$small data segments below 400 bytes before the last"; return 1; }
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

section "hostile and unusual clients"
write_raw_py
# A second namespace routed through the tap's host side, for the MSS 1 check (lib.sh).
NS2=smolhttpd-fair2-$$
ROUTED=0
setup_routed && ROUTED=1
check "10 spoofed SYNs from silent on-link addresses: a curl within 2.5 s, then the server idle" t_spoofed_syns
check "10 slow request bodies (a byte every 4 s): a newcomer's curl within 2.5 s" t_slow_bodies
check "offload: a SYN with options NOP, MSS 1460 gets its SYN-ACK" t_nop_mss
check "a SYN announcing MSS 1: no data segment below 400 bytes but the last" t_mss_floor

# The same crowds over IPv6: the server at fd69::1, the clients at fd69::100 (with6 points
# SERVER_IP and BASE there for one check).
with6() {
  local base=$BASE ip=$SERVER_IP rc
  BASE="http://[fd69::1]"; SERVER_IP=fd69::1
  SPOOF_PREFIX=fd69:: "$@"; rc=$?
  BASE=$base; SERVER_IP=$ip
  return "$rc"
}
section "the same over IPv6 (http://[fd69::1]/)"
check "IPv6: 40 keep-alive clients x 10 requests: all 400 answered within 3 s" with6 t_keepalive
check "IPv6: 10 readers of Planeta.mp4 at 1 KB/s: a new curl of / within 2 s, 3 times" with6 t_slow_readers
check "IPv6: 10 slow-header clients: a new curl of / within 2 s" with6 t_slow_heads
check "IPv6: 10 idle keep-alive connections: a new client connects within 100 ms" with6 t_idle
check "IPv6: 30 concurrent downloads of Planeta.mp4: all byte-exact" with6 t_downloads
check "IPv6: ab -c 50 -n 3000 -k (keep-alive): all answered, none failed" with6 t_ab -k
check "IPv6: 10 spoofed SYNs from silent on-link addresses (fd69::70..79): a curl within 2.5 s, then the server idle" with6 t_spoofed_syns
check "IPv6: 10 slow request bodies (a byte every 4 s): a newcomer's curl within 2.5 s" with6 t_slow_bodies

section "afterwards"
check "/status counts the evictions (slow readers and slow heads)" t_counters
check "server still running, no panic" t_no_panic
echo
finish
