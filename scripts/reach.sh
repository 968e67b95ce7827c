#!/usr/bin/env bash
# reach.sh — smolhttpd reached from other machines, as lab02 runs: a chat server on one
# machine and clients on others. Every "machine" is a network namespace this script creates and
# deletes; nothing leaves them.
#
#   srv   the server machine: tap0 with smolhttpd, made by `scripts/tap-up.sh --publish 8080`,
#         and its LAN address 10.69.0.1/24
#   m1    another machine on the LAN, 10.69.0.11/24
#   m2    another machine on the LAN, 10.69.0.12/24
#   lan   the LAN itself: a bridge joining the three
#   dh    a tap with a DHCP server (dnsmasq) on the host side, for `--ip dhcp`
#
# Checks: from m1, every file of fs_image/ byte-exact through http://10.69.0.1:8080/; the
# server's access log shows m1's own address; the server machine reaches its own published
# port; the chat CLI posts from m1 and m2's `chat --listen` shows it (the lab's three machines);
# headless Chromium on m2 opens the chat page through the published port and sees a CLI post
# arrive on the event stream; tap-down.sh removes the nftables table and turns forwarding back
# off; `--ip dhcp` takes dnsmasq's address, and without a DHCP server falls back to
# 192.168.69.1 after 3 s. Ends with `N passed, M failed`.
#
# Usage (as root; CI runs it):  sudo scripts/reach.sh
# shellcheck disable=SC2317  # checks are called via check()
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

need_root "it creates network namespaces, a tap and nftables rules"
need curl curl
need nft nftables
need python3 python3

OUT=${REACH_OUT:-target/reach}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
SRV=smolhttpd-srv-$$ M1=smolhttpd-m1-$$ M2=smolhttpd-m2-$$ LAN=smolhttpd-lan-$$ DH=smolhttpd-dh-$$
PUB=8080
SRV_LAN=10.69.0.1
URL=http://$SRV_LAN:$PUB
PIDS=()
set_traps
stop_all() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; PIDS=(); }
ON_CLEANUP+=(stop_all)
release_bins

# ------------------------------------------------------------------ the machines

for ns in "$SRV" "$M1" "$M2" "$LAN" "$DH"; do make_ns "$ns" || die "ip netns add $ns failed"; done
ip -n "$LAN" link add br0 type bridge && ip -n "$LAN" link set br0 up || die "bridge failed"
join() { # NS ADDR: a veth from NS's eth0 to the LAN bridge
  local ns=$1 addr=$2 port=v$RANDOM
  ip link add eth0 netns "$ns" type veth peer name "$port" netns "$LAN" &&
    ip -n "$LAN" link set "$port" master br0 && ip -n "$LAN" link set "$port" up &&
    ip -n "$ns" addr add "$addr/24" dev eth0 && ip -n "$ns" link set eth0 up
}
join "$SRV" "$SRV_LAN" && join "$M1" 10.69.0.11 && join "$M2" 10.69.0.12 || die "veths failed"

section "the server machine: tap-up.sh --publish $PUB"
forward_before=$(ip netns exec "$SRV" cat /proc/sys/net/ipv4/ip_forward)
ip netns exec "$SRV" scripts/tap-up.sh --publish "$PUB" tap0 >"$OUT/tap-up.log" 2>&1 ||
  { cat "$OUT/tap-up.log"; die "tap-up.sh --publish failed"; }
sed 's/^/  /' "$OUT/tap-up.log"
LOG=$OUT/server.log
NS=$SRV
RUST_LOG=info ip netns exec "$SRV" "$BIN" --tap tap0 >"$LOG" 2>&1 &
SERVER_PID=$!
wait_up "$M1" "$SERVER_PID" "$URL/" 50 || { tail -n 20 "$LOG"; die "not reachable from m1 at $URL/"; }

# ------------------------------------------------------------------ checks

t_files() {
  local f rel bad=0 n=0
  while IFS= read -r -d '' f; do
    rel=${f#fs_image}; n=$((n + 1))
    ns_curl "$M1" -o "$TMPD/got" "$URL$rel" || { echo "curl $rel failed"; bad=$((bad + 1)); continue; }
    [ "$(sha "$TMPD/got")" = "$(sha "$f")" ] || { echo "$rel differs"; bad=$((bad + 1)); }
  done < <(find fs_image -type f -print0 | sort -z)
  echo "info: $((n - bad)) of $n files byte-exact from m1 through $URL/"
  [ "$bad" -eq 0 ]
}
t_peer_address() {
  ns_curl "$M1" -o /dev/null "$URL/text/text.htm?from=m1" || return 1
  sleep 0.3
  local line
  line=$(grep -F 'GET /text/text.htm?from=m1' "$LOG" | tail -n 1)
  echo "info: server log: ${line#*] }"
  grep -q '10\.69\.0\.11:[0-9]* GET /text/text.htm?from=m1 200' <<<"$line"
}
t_own_host() {
  ns_curl "$SRV" -o "$TMPD/own" "$URL/index.html" && cmp -s "$TMPD/own" fs_image/index.html &&
    echo "info: the server machine reaches its own published port"
}
t_chat_machines() {
  local pid i
  ip netns exec "$M2" timeout 30 "$CHAT_BIN" "$SRV_LAN" "$PUB" --listen --for 20 >"$OUT/m2-listen.txt" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  sleep 1.5
  echo "hola desde m1" | ip netns exec "$M1" timeout 20 "$CHAT_BIN" "$SRV_LAN" "$PUB" --name m1 ||
    { echo "the post from m1 failed"; return 1; }
  for i in $(seq 1 50); do
    grep -q 'hola desde m1' "$OUT/m2-listen.txt" && break
    sleep 0.1
  done
  stop_pid "$pid"
  grep -q 'hola desde m1' "$OUT/m2-listen.txt" || { echo "m2 did not show it:"; cat "$OUT/m2-listen.txt"; return 1; }
  echo "info: m2 showed m1's post: $(grep -m1 'hola desde m1' "$OUT/m2-listen.txt")"
}
t_browser() {
  command -v node >/dev/null && command -v chromium >/dev/null || { echo "node or chromium missing"; return 77; }
  (need_browser) || return 1
  ip netns exec "$M2" env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 POST_NAME=m2 POST_TEXT="from m2's browser" \
    CHAT_BIN="$CHAT_BIN" CHAT_SERVER="$SRV_LAN $PUB" \
    timeout 90 node scripts/e2e/chat.mjs "$URL/chat.html" "$OUT" >"$OUT/chat.json" 2>"$OUT/chat.err" ||
    { echo "chat.mjs failed:"; cat "$OUT/chat.json"; tail -n 5 "$OUT/chat.err"; return 1; }
  python3 - "$OUT/chat.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"info: mode={s.get('mode')}; CLI post shown {s.get('cliToPageMs')} ms after the CLI returned; "
      f"polling requests {s.get('pollRequests')}")
PY
}
check "every file byte-exact from another machine (m1) through the published port" t_files
check "the access log shows the other machine's own address (no masquerade)" t_peer_address
check "the server machine reaches its own published port" t_own_host
check_here "lab02's three machines: m1's chat post shows on m2's chat --listen" t_chat_machines
check "headless Chromium on m2: the chat page through the published port, a post over the event stream" t_browser
stop_server

section "tap-down.sh removes what --publish added"
t_down() {
  ip netns exec "$SRV" scripts/tap-down.sh tap0 >"$OUT/tap-down.log" 2>&1 || { cat "$OUT/tap-down.log"; return 1; }
  sed 's/^/info: /' "$OUT/tap-down.log"
  if ip netns exec "$SRV" nft list tables | grep -q smolhttpd_tap0; then echo "the nft table is still there"; return 1; fi
  local now
  now=$(ip netns exec "$SRV" cat /proc/sys/net/ipv4/ip_forward)
  echo "info: IPv4 forwarding $forward_before before, $now after"
  [ "$now" = "$forward_before" ]
}
check "tap-down.sh: the nft table is gone and forwarding is as it was" t_down

section "--ip dhcp: an address from the LAN's DHCP server, else the fallback"
ip netns exec "$DH" scripts/tap-up.sh tap0 >/dev/null || die "tap-up.sh in $DH failed"
NS=$DH
LOG=$OUT/server-dhcp.log
t_dhcp() {
  local ip
  ip netns exec "$DH" dnsmasq --no-daemon --port=0 --interface=tap0 --bind-interfaces \
    --dhcp-range=192.168.69.50,192.168.69.59,255.255.255.0,1h --dhcp-leasefile="$TMPD/leases" \
    --pid-file="$TMPD/dnsmasq.pid" >"$OUT/dnsmasq.log" 2>&1 &
  local dpid=$!
  PIDS+=("$dpid")
  sleep 0.5
  RUST_LOG=info ip netns exec "$DH" "$BIN" --tap tap0 --ip dhcp >"$LOG" 2>&1 &
  SERVER_PID=$!
  # dnsmasq pings an address before it offers it (3 s); a lost exchange is retried by the
  # client after 10 s: 25 s covers both.
  for _ in $(seq 1 250); do grep -q 'address .* from DHCP' "$LOG" && break; sleep 0.1; done
  stop_pid "$dpid"
  ip=$(sed -n 's/.*address \(192\.168\.69\.5[0-9]\)\/24 from DHCP.*/\1/p' "$LOG" | head -n 1)
  [ -n "$ip" ] || { echo "no DHCP address in the log:"; cat "$LOG"; return 1; }
  grep -m1 'at an address from DHCP' "$LOG" | sed 's/^/info: /'
  echo "info: $(grep -m1 'address .* from DHCP' "$LOG" | sed 's/^\[[^]]*\] *//')"
  ns_curl "$DH" -o "$TMPD/dhcp-index" "http://$ip/index.html" && cmp -s "$TMPD/dhcp-index" fs_image/index.html
}
t_fallback() {
  stop_server
  RUST_LOG=info ip netns exec "$DH" "$BIN" --tap tap0 --ip dhcp >"$LOG" 2>&1 &
  SERVER_PID=$!
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 1 100); do grep -q 'no DHCP answer' "$LOG" && break; sleep 0.1; done
  t1=$(date +%s.%N)
  grep -q 'no DHCP answer in 3 s: serving on 192.168.69.1/24' "$LOG" || { cat "$LOG"; return 1; }
  echo "info: fell back after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
  ns_curl "$DH" -o /dev/null "http://192.168.69.1/index.html"
}
check_here "--ip dhcp takes dnsmasq's address and serves there" t_dhcp
check_here "--ip dhcp with no DHCP server: 192.168.69.1/24 after 3 s" t_fallback
stop_server

section "a name on the link: smolhttpd.local by mDNS, and a second server renamed"
# Two servers on one link (a bridge with two taps); python-zeroconf (a third-party mDNS
# implementation) resolves the names from the host side.
NM=smolhttpd-nm-$$
make_ns "$NM" || die "ip netns add $NM failed"
{
  ip netns exec "$NM" scripts/tap-up.sh tap0 >/dev/null && ip netns exec "$NM" scripts/tap-up.sh tap1 >/dev/null &&
    ip -n "$NM" addr flush dev tap0 && ip -n "$NM" addr flush dev tap1 &&
    ip -n "$NM" link add br0 type bridge && ip -n "$NM" link set tap0 master br0 &&
    ip -n "$NM" link set tap1 master br0 && ip -n "$NM" addr add 192.168.69.100/24 dev br0 &&
    ip -n "$NM" link set br0 up && ip -n "$NM" route add 224.0.0.0/4 dev br0
} || die "the mDNS link in $NM failed"
command -v pip >/dev/null && ! python3 -c 'import zeroconf' 2>/dev/null &&
  timeout 300 pip install -q zeroconf >/dev/null 2>&1
# Another machine on the same bridged LAN (a veth into br0), 192.168.69.150.
M3=smolhttpd-m3-$$
make_ns "$M3" || die "ip netns add $M3 failed"
{
  ip link add eth0 netns "$M3" type veth peer name vm3 netns "$NM" &&
    ip -n "$NM" link set vm3 master br0 && ip -n "$NM" link set vm3 up &&
    ip -n "$M3" addr add 192.168.69.150/24 dev eth0 && ip -n "$M3" link set eth0 up &&
    ip -n "$M3" route add 224.0.0.0/4 dev eth0
} || die "the LAN machine $M3 failed"
resolve() { # NAME [NS ADDR]: the addresses python-zeroconf resolves NAME.local to (A, then
  # AAAA, each asked for on its own: one answer need not carry both), from NS
  ip netns exec "${2:-$NM}" timeout 20 python3 - "$1" "${3:-192.168.69.100}" <<'PY'
import sys
from zeroconf import AddressResolverIPv4, AddressResolverIPv6, Zeroconf
zc = Zeroconf(interfaces=[sys.argv[2]])
found = []
for kind in (AddressResolverIPv4, AddressResolverIPv6):
    r = kind(sys.argv[1] + ".local.")
    r.request(zc, 4000)
    found += r.parsed_addresses()
print(" ".join(dict.fromkeys(found)))
zc.close()
PY
}
# has_all "ADDRS" ADDR...: every ADDR is one of the space-separated ADDRS (any order).
has_all() {
  local got=" $1 " a
  shift
  for a in "$@"; do [[ $got == *" $a "* ]] || { echo "'$a' is not among '${got# }'"; return 1; }; done
}
t_name() {
  python3 -c 'import zeroconf' 2>/dev/null || { echo "python-zeroconf missing (pip install zeroconf)"; return 77; }
  LOG=$OUT/server-mdns-1.log
  RUST_LOG=info ip netns exec "$NM" "$BIN" --tap tap0 >"$LOG" 2>&1 &
  PIDS+=($!)
  sleep 2
  grep -q 'and as http://smolhttpd.local/ by mDNS' "$LOG" || { cat "$LOG"; return 1; }
  local got
  got=$(resolve smolhttpd)
  echo "info: python-zeroconf on the tap's host side resolved smolhttpd.local to '$got'"
  # A and AAAA: IPv4, the unique local IPv6 address and the link-local one.
  has_all "$got" 192.168.69.1 fd69::1 fe80::ff:fe00:1 || return 1
  ns_curl "$NM" -o /dev/null "http://192.168.69.1/index.html" || return 1
  got=$(resolve smolhttpd "$M3" 192.168.69.150)
  echo "info: python-zeroconf on another machine of the bridged LAN resolved it to '$got'"
  has_all "$got" 192.168.69.1 fd69::1 && ns_curl "$M3" -o /dev/null "http://192.168.69.1/index.html"
}
t_conflict() {
  python3 -c 'import zeroconf' 2>/dev/null || { echo "python-zeroconf missing"; return 77; }
  local log2=$OUT/server-mdns-2.log got i
  RUST_LOG=info ip netns exec "$NM" "$BIN" --tap tap1 --ip 192.168.69.2/24 --ip6 fd69::2/64 --mac 02:00:00:00:00:02 >"$log2" 2>&1 &
  PIDS+=($!)
  for i in $(seq 1 50); do grep -q 'now answering as smolhttpd-2.local' "$log2" && break; sleep 0.1; done
  grep -m1 'now answering as' "$log2" | sed 's/^\[[^]]*\] */info: /'
  got=$(resolve smolhttpd-2)
  echo "info: python-zeroconf resolved smolhttpd-2.local to '$got'; smolhttpd.local to '$(resolve smolhttpd)'"
  has_all "$got" 192.168.69.2 fd69::2 fe80::ff:fe00:2 || return 1
  ! has_all "$got" 192.168.69.1 >/dev/null || { echo "the first server's address is among them"; return 1; }
}
check_here "smolhttpd.local resolves (python-zeroconf) to the server, which serves there" t_name
check_here "a second server on the link becomes smolhttpd-2.local" t_conflict
stop_all

echo
finish
