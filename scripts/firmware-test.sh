#!/usr/bin/env bash
# firmware-test.sh — smolhttpd as bare-metal firmware (firmware/) on two QEMU boards, served to
# curl through a tap: mps2-an386 (Cortex-M4, LAN9118, 4 MiB) and lm3s6965evb (Cortex-M3,
# Stellaris MAC, 64 KB SRAM, 256 KB flash; its site is fs_image/ without the two videos).
#
# Usage (as root; CI runs it):  sudo scripts/firmware-test.sh
#
# Installs what is missing (qemu-system-arm, dnsmasq-base, the thumbv7em-none-eabihf target),
# builds the firmware, and checks, inside a network namespace it creates and deletes (tap0
# from tap-up.sh, with fd69::100/64 on the host side; QEMU and every client in there; nothing
# leaves it):
#   - flash (text + rodata + data) and RAM (data + bss) for a one-file image: RAM <= 96 KB;
#     flash <= 100 KB without IPv6 and WebSocket (the goal is 64 KB: not reached yet, see the
#     README's Firmware section; 97.8 KB before the IPv6/WebSocket work, 98.5 KB after it),
#     <= 176 KB with both; and no allocator linked; the sizes of
#     both boards' builds with and without IPv6 (feature `ipv6`, on in every other build here;
#     `ws` on in all of them);
#   - boot with no DHCP server and no router: the static 192.168.69.1 after 3 s; every file
#     of the image byte-exact; chat post and read; /board JSON; 30 clients at once on 10
#     slots; the MB/s of /video/Planeta.mp4; boot-to-first-response time; IPv6: the UART
#     prints the link-local fe80::ff:fe00:1 and, after 3 s, the fallback fd69::1, which serves
#     the index and the largest file byte-exact; the index over link-local
#     ([fe80::ff:fe00:1%tap0]); mDNS one-shot AAAA queries over IPv4 and IPv6 list both;
#   - boot with dnsmasq on tap0 (DHCP, and router advertisements for fd69::/64: enable-ra,
#     ra-only): the firmware takes the offered address and serves there; python-zeroconf
#     resolves smolhttpd.local to it; the firmware takes fd69::ff:fe00:1 by SLAAC (the UART
#     says so) and serves the index and the largest file there; python-zeroconf over IPv6
#     alone, and one-shot AAAA queries, resolve the name to it;
#   - sleep: idle QEMU at most 10 % of a host core over 10 s (/proc/PID/stat), and a small
#     request's median time over 20 requests within 1.2x of a busy-loop build's (same run);
#   - oversize frames (1518 and 2000 bytes, broadcast, from a raw socket on the tap): the
#     firmware still answers;
#   - the clock across 2^32 ms (a build started 10 s before it): files served, a slow head's
#     408 after 5 s, an idle keep-alive connection closed after 5 s, uptime_ms growing;
#   - RAM = data + bss + the stack peak /board reports after the heaviest load (IPv6's
#     included), on lm3s6965 within its 64 KB with IPv6 on; and the builds without IPv6 of both
#     boards boot, serve 30 clients and report theirs.
# Every IPv6 check runs on both boards. Output: `ok   - ...` / `FAIL - ...`, then
# `N passed, M failed`. Every wait is bounded.
# shellcheck disable=SC2317  # checks are called via check()
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${FIRMWARE_OUT:-target/firmware}
NS=smolhttpd-fw-$$
ELF=firmware/target/thumbv7em-none-eabihf/release/smolhttpd-firmware
ELF_BUILT=$ELF
QEMU_PID=
CURL_LIMITS=(--connect-timeout 5 --max-time 30)
need_root "it creates a network namespace and a tap"
need curl curl
need python3 python3

for pair in qemu-system-arm:qemu-system-arm dnsmasq:dnsmasq-base; do
  if ! command -v "${pair%%:*}" >/dev/null; then
    say "installing ${pair#*:}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pair#*:}"; } >/dev/null ||
      die "apt-get install ${pair#*:} failed"
  fi
done
rustup target list --installed | grep -q '^thumbv7em-none-eabihf$' || rustup target add thumbv7em-none-eabihf
rustup target list --installed | grep -q '^thumbv7m-none-eabi$' || rustup target add thumbv7m-none-eabi

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
set_traps
stop_qemu() { stop_pid "$QEMU_PID"; QEMU_PID=; }
ON_CLEANUP+=(stop_qemu)

# elf_sizes ELF: "FLASH RAM" bytes: allocated sections; flash holds the read-only ones and
# the initial contents of .data, RAM the writable ones.
elf_sizes() {
  python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
shoff, = struct.unpack_from("<I", d, 0x20)
shentsize, shnum = struct.unpack_from("<HH", d, 0x2E)
flash = ram = 0
for i in range(shnum):
    name, typ, flags, addr, off, size = struct.unpack_from("<IIIIII", d, shoff + i * shentsize)
    if flags & 2:                      # SHF_ALLOC
        if flags & 1:                  # SHF_WRITE: data, bss (and the uninit stack guard)
            ram += size
            if typ == 1: flash += size # PROGBITS (.data): its initial values are in flash
        else: flash += size            # text, rodata, vector table
print(flash, ram)
PY
}

# elf_symbols ELF: the names in the symbol table, one a line.
elf_symbols() {
  python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
shoff, = struct.unpack_from("<I", d, 0x20)
shentsize, shnum = struct.unpack_from("<HH", d, 0x2E)
secs = [struct.unpack_from("<IIIIIIIIII", d, shoff + i * shentsize) for i in range(shnum)]
for s in secs:
    if s[1] == 2:  # SHT_SYMTAB
        strtab = secs[s[6]]
        for j in range(s[5] // 16):
            n, = struct.unpack_from("<I", d, s[4] + j * 16)
            end = d.index(b"\0", strtab[4] + n)
            print(d[strtab[4] + n:end].decode(errors="replace"))
PY
}

# ------------------------------------------------------------------ size (one-file image)

section "firmware size with a one-file image"
mkdir -p "$TMPD/one"
printf '<!doctype html><title>one</title><p>hello from the firmware\n' >"$TMPD/one/index.html"
t_size() {
  local sizes flash ram flash4 ram4
  (cd firmware && SMOLHTTPD_FS_IMAGE="$TMPD/one" cargo build --release -q --no-default-features \
    --features mps2-an386) || return 1
  sizes=$(elf_sizes "$ELF"); flash4=${sizes% *}; ram4=${sizes#* }
  (cd firmware && SMOLHTTPD_FS_IMAGE="$TMPD/one" cargo build --release -q) || return 1
  cp "$ELF" "$OUT/firmware-one-file.elf"
  sizes=$(elf_sizes "$OUT/firmware-one-file.elf"); flash=${sizes% *}; ram=${sizes#* }
  echo "$flash" >"$TMPD/log-flash"
  echo "info: without IPv6 and WebSocket: flash (text + rodata + data) $flash4 bytes, RAM (data + bss) $ram4 bytes"
  echo "info: with both (the default): flash $flash bytes (+$((flash - flash4))), RAM $ram bytes (+$((ram - ram4)))"
  [ "$flash4" -le 65536 ] || echo "info: flash is over the 64 KB goal by $((flash4 - 65536)) bytes"
  [ "$flash4" -le 102400 ] && [ "$ram4" -le 98304 ] && [ "$flash" -le 180224 ] && [ "$ram" -le 98304 ]
}
t_no_alloc() {
  local syms
  syms=$(elf_symbols "$OUT/firmware-one-file.elf")
  echo "$syms" | grep -qx 'SysTick' || { echo "no symbol table to judge"; return 1; }
  if echo "$syms" | grep -E '__rust_(alloc|dealloc|realloc|alloc_zeroed)|__rg_alloc|__rdl_alloc'; then
    echo "an allocator is linked"; return 1
  fi
  echo "info: $(echo "$syms" | wc -l) symbols, none of an allocator"
}
check "flash <= 100 KB (goal 64 KB; 176 KB with IPv6 and WebSocket), RAM <= 96 KB (10 slots: 1 KiB + 2 KiB socket buffers, 1 KiB requests, 32 chat messages)" t_size
check "no allocator linked (no __rust_alloc/__rg_alloc in the ELF)" t_no_alloc

# ------------------------------------------------------------------ the full image

say "building the firmware with fs_image/ (sleeping, busy-poll, and clock-wrap builds)"
(cd firmware && cargo build --release -q) || die "firmware build failed"
cp "$ELF" "$OUT/firmware.elf"
(cd firmware && cargo build --release -q --features busy-poll) || die "busy-poll build failed"
cp "$ELF" "$OUT/firmware-busy.elf"
# 10 s before the old u32 wrap at 2^32 ms.
WRAP_AT=4294967296
(cd firmware && SMOLHTTPD_FW_CLOCK_START_MS=$((WRAP_AT - 10000)) cargo build --release -q) ||
  die "clock-wrap build failed"
cp "$ELF" "$OUT/firmware-wrap.elf"
ELF=$OUT/firmware.elf
MACHINE=mps2-an386 NIC_MODEL=lan9118 SPEED_FILE=video/Planeta.mp4
LM3S_ELF=firmware/target/thumbv7m-none-eabi/release/smolhttpd-firmware
(cd firmware && cargo build --release -q --no-default-features --features lm3s6965,ipv6,ws \
  --target thumbv7m-none-eabi) || die "lm3s6965 build failed"
cp "$LM3S_ELF" "$OUT/firmware-lm3s6965.elf"
# Both boards without IPv6 (the feature off), for their sizes and a run of their own.
(cd firmware && cargo build --release -q --no-default-features --features lm3s6965,ws \
  --target thumbv7m-none-eabi) || die "lm3s6965 build without IPv6 failed"
cp "$LM3S_ELF" "$OUT/firmware-lm3s6965-v4.elf"
(cd firmware && cargo build --release -q --no-default-features --features mps2-an386,ws) ||
  die "mps2-an386 build without IPv6 failed"
cp "$ELF_BUILT" "$OUT/firmware-v4.elf"
# Its site: fs_image/ without the two videos (its flash is 256 KB), as its build.rs makes it.
LM3S_FS=$TMPD/site-lm3s6965
mkdir -p "$LM3S_FS" && cp -r "$FS"/. "$LM3S_FS"/ && rm -rf "$LM3S_FS/video"
make_tap_ns quiet
# The host side's IPv6 on the link (`replace`: tap-up.sh may have set it), without waiting for
# duplicate address detection; it takes no router advertisements (dnsmasq's are its own).
ip -n "$NS" -6 addr replace fd69::100/64 dev tap0 nodad || die "no IPv6 address on tap0"
ip netns exec "$NS" sysctl -qw net.ipv6.conf.tap0.accept_ra=0
# mDNS queries to 224.0.0.251 leave through the tap.
ip -n "$NS" route add 224.0.0.0/4 dev tap0 2>/dev/null

section "sizes with and without IPv6 (full sites)"
t_sizes() {
  local elf sizes f4 r4 f6 r6 board
  for board in mps2-an386 lm3s6965; do
    if [ $board = mps2-an386 ]; then elf=$OUT/firmware; else elf=$OUT/firmware-lm3s6965; fi
    sizes=$(elf_sizes "$elf-v4.elf"); f4=${sizes% *}; r4=${sizes#* }
    sizes=$(elf_sizes "$elf.elf"); f6=${sizes% *}; r6=${sizes#* }
    echo "info: $board: flash $f4 -> $f6 bytes (+$((f6 - f4))), data + bss $r4 -> $r6 bytes (+$((r6 - r4)))"
  done
}
check "IPv6's cost in flash and RAM (data + bss) on both boards (stack peaks below)" t_sizes

# boot LOG [ELF]: QEMU with the firmware on tap0 in $NS, UART to LOG; BOOT_T0 is its start.
boot() {
  stop_qemu
  BOOT_T0=$(date +%s.%N)
  ip netns exec "$NS" timeout -k 5 600 qemu-system-arm -M "$MACHINE" -nographic -no-reboot \
    -nic "tap,ifname=tap0,script=no,downscript=no,model=$NIC_MODEL,mac=02:00:00:00:00:01" \
    -kernel "${2:-$ELF}" </dev/null >"$1" 2>&1 &
  QEMU_PID=$!
}

# cpu_ticks PID: user + system clock ticks so far of PID and its children (QEMU_PID is the
# `timeout` that runs QEMU as its child).
cpu_ticks() {
  local p total=0 t
  for p in "$1" $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
    t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) && total=$((total + t))
  done
  echo "$total"
}

# median_request: median time_total of 20 sequential GETs of /index.html, in ms, under load:
# a download at 400 KB/s runs meanwhile, so the firmware is busy, as the issue's comparison asks
# (an idle core's first packet pays QEMU's wake-up from wfi, a few hundred microseconds).
median_request() {
  local i load
  ncurl --limit-rate 400k -o /dev/null "$BASE/video/Planeta.mp4" >/dev/null 2>&1 &
  load=$!
  sleep 0.3
  for i in $(seq 1 20); do
    ncurl -o /dev/null -w '%{time_total}\n' "$BASE/index.html" || echo 9
  done | sort -n | awk '{ a[NR] = $1 } END { printf "%.2f\n", (a[10] + a[11]) / 2 * 1000 }'
  stop_pid "$load"
}

# first_answer URL: seconds from BOOT_T0 to URL's first 200 (polling 0.1 s, up to 30 s).
first_answer() {
  local t
  for _ in $(seq 1 300); do
    if ip netns exec "$NS" curl -s --noproxy '*' -o /dev/null --connect-timeout 1 --max-time 2 -f "$1"; then
      t=$(date +%s.%N); awk -v a="$BOOT_T0" -v b="$t" 'BEGIN { printf "%.2f\n", b - a }'; return 0
    fi
    kill -0 "$QEMU_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# mdns_oneshot 4|6 TYPE: a one-shot mDNS query (RFC 6762 6.7, as `dig -p 5353 @224.0.0.251`
# sends it; dig itself drops the answer, which comes from the host's own address) for
# smolhttpd.local, TYPE A or AAAA, to 224.0.0.251 or ff02::fb on tap0, from an ephemeral port;
# prints the addresses of the answer, sorted, one a line.
mdns_oneshot() {
  ip netns exec "$NS" python3 - "$1" "$2" <<'PY'
import socket, struct, sys
fam, qtype = sys.argv[1], {"A": 1, "AAAA": 28}[sys.argv[2]]
name = b"".join(bytes([len(l)]) + l for l in b"smolhttpd.local".split(b".")) + b"\0"
query = struct.pack(">6H", 0x6d64, 0, 1, 0, 0, 0) + name + struct.pack(">HH", qtype, 1)
if fam == "4":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.168.69.100"))
    to = ("224.0.0.251", 5353)
else:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    index = socket.if_nametoindex("tap0")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    to = ("ff02::fb", 5353, 0, index)
s.settimeout(2)
def skip_name(m, at):
    while m[at] != 0:
        if m[at] & 0xC0 == 0xC0:
            return at + 2
        at += 1 + m[at]
    return at + 1
for attempt in range(3):
    s.sendto(query, to)
    try:
        m, _ = s.recvfrom(2048)
    except socket.timeout:
        continue
    if m[:2] != query[:2]:
        continue
    qd, an = struct.unpack_from(">HH", m, 4)
    at = 12
    for _ in range(qd):
        at = skip_name(m, at) + 4
    found = []
    for _ in range(an):
        at = skip_name(m, at)
        rtype, _, _, rdlen = struct.unpack_from(">HHIH", m, at)
        rdata = m[at + 10:at + 10 + rdlen]
        at += 10 + rdlen
        if rtype == 1 and rdlen == 4:
            found.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28 and rdlen == 16:
            found.append(socket.inet_ntop(socket.AF_INET6, rdata))
    print("\n".join(sorted(found)))
    sys.exit(0)
sys.exit(1)
PY
}

# IPv6 without a router on the link (the static boots): the link-local address at once, the
# fallback fd69::1 after 3 s.
t6_fallback() {
  local out
  for _ in $(seq 1 50); do grep -q 'address fd69::1/64 (fallback' "$UART" && break; sleep 0.1; done
  grep -q 'address fe80::ff:fe00:1/64 (link-local)' "$UART" ||
    { echo "no link-local address on the UART:"; cat "$UART"; return 1; }
  grep -q 'address fd69::1/64 (fallback, no router advertisement), serving http://\[fd69::1\]/' "$UART" ||
    { echo "no fallback address on the UART:"; cat "$UART"; return 1; }
  echo "info: $(grep -m1 'address fd69::1/64' "$UART" | sed 's/^\[[^]]*\] *//')"
  ncurl -g -6 -o "$TMPD/v6-index" "http://[fd69::1]/" && cmp -s "$TMPD/v6-index" "$FS/index.html" ||
    { echo "http://[fd69::1]/ failed or differs"; return 1; }
  out=$(ncurl -g -6 -o "$TMPD/v6-big" -w '%{speed_download} %{time_total}' "http://[fd69::1]/$SPEED_FILE") || return 1
  cmp -s "$TMPD/v6-big" "$FS/$SPEED_FILE" || { echo "$SPEED_FILE differs over IPv6"; return 1; }
  echo "info: $(echo "$out" | awk -v f="$SPEED_FILE" '{ printf "%s over IPv6 byte-exact: %.2f MB/s (%.2f s)", f, $1 / 1e6, $2 }')"
}
t6_link_local() {
  ncurl -g -6 -o "$TMPD/ll-index" 'http://[fe80::ff:fe00:1%tap0]/' &&
    cmp -s "$TMPD/ll-index" "$FS/index.html" && echo "info: http://[fe80::ff:fe00:1%tap0]/ byte-exact"
}
# t6_mdns_aaaa ADDR...: one-shot AAAA queries over IPv4 and over IPv6 both list ADDR...
t6_mdns_aaaa() {
  local fam got want
  want=$(printf '%s\n' "$@" | sort)
  for fam in 4 6; do
    got=$(mdns_oneshot "$fam" AAAA) || { echo "no answer to a one-shot AAAA query over IPv$fam"; return 1; }
    echo "info: AAAA over IPv$fam: $(echo $got)"
    [ "$got" = "$want" ] || { echo "expected: $(echo $want)"; return 1; }
  done
}

section "firmware on tap0, no DHCP server: the static address"
UART=$OUT/uart-static.log
boot "$UART"
t_boot() {
  local secs
  secs=$(first_answer "$BASE/") || { echo "no answer from $BASE/"; tail -n 5 "$UART"; return 1; }
  echo "info: boot to first response $secs s (3 s of it waiting for DHCP)"
  grep -q 'address 192.168.69.1/24 (static' "$UART" || { echo "UART:"; cat "$UART"; return 1; }
  echo "info: $(grep -m1 'address 192' "$UART" | sed 's/^\[[^]]*\] *//')"
}
t_files() {
  local f rel bad=0 n=0
  while IFS= read -r -d '' f; do
    rel=${f#"$FS"}; n=$((n + 1))
    ncurl -o "$TMPD/got" "$BASE$rel" || { echo "curl $rel failed"; bad=$((bad + 1)); continue; }
    [ "$(sha "$TMPD/got")" = "$(sha "$f")" ] || { echo "$rel differs"; bad=$((bad + 1)); }
  done < <(find "$FS" -type f -print0 | sort -z)
  echo "info: $((n - bad)) of $n files byte-exact"
  [ "$bad" -eq 0 ]
}
t_chat() {
  local code
  code=$(ncurl -o /dev/null -w '%{http_code}' --data-urlencode name=fw --data-urlencode 'text=hola desde el firmware' "$BASE/chat") || return 1
  [ "$code" = 201 ] || { echo "POST /chat: $code"; return 1; }
  ncurl "$BASE/chat?since=0" | python3 -c 'import json,sys; d=json.load(sys.stdin); m=d["messages"]; print("info:", m); sys.exit(not any(x["text"] == "hola desde el firmware" and x["name"] == "fw" for x in m))'
}
t_board() {
  ncurl "$BASE/board" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("info:", d)
sys.exit(not (d["slots"] == 10 and d["uptime_ms"] > 0 and d["requests"] > 0))'
}
t_crowd() {
  local pids=() i bad=0
  for i in $(seq 1 30); do ncurl -o "$TMPD/c$i" -f "$BASE/index.html" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
  for i in $(seq 1 30); do cmp -s "$TMPD/c$i" "$FS/index.html" || bad=$((bad + 1)); done
  echo "info: $((30 - bad)) of 30 served"
  [ "$bad" -eq 0 ]
}
t_speed() {
  local out size
  out=$(ncurl -o "$TMPD/largest" -w '%{speed_download} %{time_total}' "$BASE/$SPEED_FILE") || return 1
  cmp -s "$TMPD/largest" "$FS/$SPEED_FILE" || { echo "$SPEED_FILE differs"; return 1; }
  size=$(fsize "$FS/$SPEED_FILE")
  echo "info: $(echo "$out" | awk -v n="$size" -v f="$SPEED_FILE" '{ printf "%.2f MB/s (%.2f s for %s, %d bytes)", $1 / 1e6, $2, f, n }')"
}
check "boots, falls back to 192.168.69.1/24 after 3 s, answers /" t_boot
check "every file of fs_image/ byte-exact" t_files
check "chat: POST 201, and GET /chat has the message" t_chat
check "/board: JSON with uptime_ms, requests, slots 10" t_board
check "30 clients at once on 10 slots: all served" t_crowd
check "$SPEED_FILE (the largest file) under TCG: byte-exact, MB/s" t_speed
check "IPv6, no router: fe80::ff:fe00:1 at boot, fd69::1 after 3 s on the UART; index and $SPEED_FILE byte-exact there" t6_fallback
check "IPv6 link-local: http://[fe80::ff:fe00:1%tap0]/ byte-exact" t6_link_local
check "mDNS: one-shot AAAA queries over IPv4 and IPv6 answer fd69::1 and fe80::ff:fe00:1" t6_mdns_aaaa fd69::1 fe80::ff:fe00:1
# t_ram LIMIT [WHICH]: data + bss + the stack peak after the heaviest load (30 clients, chat,
# ranges, the largest file, and with IPv6 the IPv6 checks), at most LIMIT bytes.
t_ram() {
  local peak sizes flash ram
  peak=$(ncurl "$BASE/board" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stack_peak"])') || return 1
  sizes=$(elf_sizes "$ELF"); flash=${sizes% *}; ram=${sizes#* }
  echo "info: $MACHINE${2:+ $2}: flash $flash bytes; RAM = data + bss $ram + stack peak $peak = $((ram + peak)) bytes (limit $1)"
  [ "$peak" -gt 0 ] && [ $((ram + peak)) -le "$1" ]
}
ncurl -s -o /dev/null -H 'Range: bytes=100-200' "$BASE/video/Planeta.mp4"
check "stack peak measured after the heaviest load (RAM = data + bss + stack peak)" t_ram $((4 * 1024 * 1024))
t_oversize() {
  # Frames longer than the firmware takes (a VLAN-tagged full frame is 1518 bytes): the tap
  # must carry them, so its MTU goes up for the sender.
  ip -n "$NS" link set tap0 mtu 2000 || return 1
  ip netns exec "$NS" python3 - <<'PY' || return 1
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("tap0", 0))
src = open("/sys/class/net/tap0/address").read().strip()
hdr = b"\xff" * 6 + bytes.fromhex(src.replace(":", "")) + b"\x08\x06"
for size in (1518, 2000, 1518):
    s.send(hdr + b"\x00" * (size - len(hdr)))
PY
  ip -n "$NS" link set tap0 mtu 1500
  sleep 0.5
  ncurl -o "$TMPD/after-oversize" "$BASE/index.html" && cmp -s "$TMPD/after-oversize" "$FS/index.html" &&
    ncurl -o /dev/null "$BASE/text/text.htm" && echo "info: still answering after 1518- and 2000-byte frames"
}
check "oversize frames (1518, 2000 bytes) do not stop reception" t_oversize
t_idle() {
  local a b pct
  sleep 2
  a=$(cpu_ticks "$QEMU_PID"); sleep 10; b=$(cpu_ticks "$QEMU_PID")
  pct=$(( (b - a) * 100 / $(getconf CLK_TCK) / 10 ))
  echo "info: idle QEMU used $((b - a)) ticks in 10 s: $pct % of a core (the busy loop: ~100 %)"
  [ "$pct" -le 10 ]
}
check "idle: QEMU at most 10 % of a host core over 10 s (wfi between polls)" t_idle
SLEEP_MEDIAN=$(median_request)
stop_qemu

section "the busy-loop build: idle CPU and latency, for comparison"
UART=$OUT/uart-busy.log
boot "$UART" "$OUT/firmware-busy.elf"
t_busy() {
  local a b pct busy
  first_answer "$BASE/" >/dev/null || { echo "the busy build does not answer"; return 1; }
  a=$(cpu_ticks "$QEMU_PID"); sleep 5; b=$(cpu_ticks "$QEMU_PID")
  pct=$(( (b - a) * 100 / $(getconf CLK_TCK) / 5 ))
  busy=$(median_request)
  echo "info: busy loop: idle $pct % of a core; median small request: sleeping $SLEEP_MEDIAN ms, busy $busy ms"
  awk -v s="$SLEEP_MEDIAN" -v b="$busy" 'BEGIN { exit !(s <= b * 1.2 + 0.5) }'
}
check "a small request's median with sleep within 1.2x the busy loop's (+0.5 ms)" t_busy
stop_qemu

section "the clock across 2^32 ms (started 10 s before the old u32 wrap)"
UART=$OUT/uart-wrap.log
boot "$UART" "$OUT/firmware-wrap.elf"
clock_ms() { ncurl "$BASE/board" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["clock_ms"], d["uptime_ms"])'; }
t_wrap() {
  local before after t0 t1 code
  first_answer "$BASE/" >/dev/null || { echo "the wrap build does not answer"; cat "$UART"; return 1; }
  before=$(clock_ms) || return 1
  # A slow head opened just before the crossing must get its 408 5 s later, across it; an
  # idle keep-alive connection must be closed 5 s after its response.
  while [ "${before% *}" -lt $((WRAP_AT - 3000)) ]; do sleep 0.2; before=$(clock_ms) || return 1; done
  echo "info: before: clock_ms ${before% *} uptime_ms ${before#* }"
  ip netns exec "$NS" python3 - "$SERVER_IP" <<'PY' || return 1
import socket, sys, time
ip = sys.argv[1]
slow = socket.create_connection((ip, 80), timeout=15)
slow.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
idle = socket.create_connection((ip, 80), timeout=15)
idle.sendall(b"GET /text/text.htm HTTP/1.1\r\nHost: t\r\n\r\n")
t0 = time.time()
got = b""
while b"\r\n\r\n" not in got:
    got += idle.recv(4096)
# Read the idle connection until the server closes it, and the slow one until its 408.
def until_close(s):
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            return data, time.time() - t0
        data += b
idle_data, idle_t = until_close(idle)
slow_data, slow_t = until_close(slow)
status = slow_data.split(b"\r\n")[0].decode(errors="replace")
print(f"info: slow head: {status} after {slow_t:.1f} s; idle keep-alive closed after {idle_t:.1f} s")
ok = slow_data.startswith(b"HTTP/1.1 408") and 4.0 <= slow_t <= 8.0 and 4.0 <= idle_t <= 8.0
sys.exit(0 if ok else 1)
PY
  after=$(clock_ms) || return 1
  echo "info: after: clock_ms ${after% *} uptime_ms ${after#* } (crossed $WRAP_AT)"
  [ "${after% *}" -gt "$WRAP_AT" ] && [ "${after#* }" -gt "${before#* }" ] || return 1
  ncurl -o "$TMPD/wrap-car" "$BASE/img/car.jpeg" && cmp -s "$TMPD/wrap-car" "$FS/img/car.jpeg"
}
check "files, a slow head's 408 after 5 s and an idle close after 5 s, across 2^32 ms" t_wrap
stop_qemu

section "lm3s6965evb (Cortex-M3, Stellaris MAC, 64 KB SRAM, 256 KB flash): no DHCP server"
MACHINE=lm3s6965evb NIC_MODEL=stellaris ELF=$OUT/firmware-lm3s6965.elf FS=$LM3S_FS SPEED_FILE=img/perro.jpg
UART=$OUT/uart-lm3s6965-static.log
boot "$UART"
t_flash() {
  local sizes flash
  sizes=$(elf_sizes "$ELF"); flash=${sizes% *}
  echo "info: flash (text + rodata + data) $flash bytes of 262144, with its site ($(du -sb "$FS" | cut -f1) bytes of files)"
  [ "$flash" -le 262144 ]
}
check "lm3s6965: its site fits its 256 KB flash" t_flash
check "lm3s6965: boots, falls back to 192.168.69.1/24 after 3 s, answers /" t_boot
check "lm3s6965: every file of its site byte-exact" t_files
check "lm3s6965: chat: POST 201, and GET /chat has the message" t_chat
check "lm3s6965: /board: JSON with uptime_ms, requests, slots 10" t_board
check "lm3s6965: 30 clients at once on 10 slots: all served" t_crowd
check "lm3s6965: $SPEED_FILE (the largest file) byte-exact, MB/s" t_speed
check "lm3s6965: IPv6, no router: fe80::ff:fe00:1 and fd69::1 on the UART; index and $SPEED_FILE byte-exact there" t6_fallback
check "lm3s6965: IPv6 link-local: http://[fe80::ff:fe00:1%tap0]/ byte-exact" t6_link_local
check "lm3s6965: mDNS: one-shot AAAA queries over IPv4 and IPv6 answer fd69::1 and fe80::ff:fe00:1" t6_mdns_aaaa fd69::1 fe80::ff:fe00:1
ncurl -s -o /dev/null -H 'Range: bytes=100-200' "$BASE/$SPEED_FILE"
check "lm3s6965: RAM = data + bss + stack peak within its 64 KB SRAM, IPv6 on" t_ram 65536
stop_qemu

section "both boards without IPv6 (the feature off): boot, 30 clients, RAM"
for board in mps2-an386 lm3s6965evb; do
  if [ "$board" = mps2-an386 ]; then
    MACHINE=mps2-an386 NIC_MODEL=lan9118 ELF=$OUT/firmware-v4.elf FS=fs_image SPEED_FILE=video/Planeta.mp4 LIMIT=$((4 * 1024 * 1024))
  else
    MACHINE=lm3s6965evb NIC_MODEL=stellaris ELF=$OUT/firmware-lm3s6965-v4.elf FS=$LM3S_FS SPEED_FILE=img/perro.jpg LIMIT=65536
  fi
  UART=$OUT/uart-v4-$board.log
  boot "$UART"
  check "$board without IPv6: boots, falls back to 192.168.69.1/24 after 3 s, answers /" t_boot
  check "$board without IPv6: 30 clients at once on 10 slots: all served" t_crowd
  check "$board without IPv6: chat: POST 201, and GET /chat has the message" t_chat
  ncurl -s -o /dev/null "$BASE/$SPEED_FILE"
  ncurl -s -o /dev/null -H 'Range: bytes=100-200' "$BASE/$SPEED_FILE"
  check "$board without IPv6: RAM = data + bss + stack peak" t_ram "$LIMIT" "without IPv6"
  stop_qemu
done
MACHINE=lm3s6965evb NIC_MODEL=stellaris ELF=$OUT/firmware-lm3s6965.elf FS=$LM3S_FS SPEED_FILE=img/perro.jpg

section "the defmt build: binary log frames on UART0, read on the host with defmt-print"
t_defmt() {
  local sizes flash uart=$OUT/uart.defmt
  command -v defmt-print >/dev/null || timeout 900 cargo install --quiet --locked defmt-print ||
    { echo "cargo install defmt-print failed"; return 1; }
  (cd firmware && SMOLHTTPD_FS_IMAGE="$TMPD/one" cargo build --release -q --features defmt) || return 1
  sizes=$(elf_sizes "$ELF_BUILT"); flash=${sizes% *}
  echo "info: flash with a one-file image: defmt $flash bytes, log $(cat "$TMPD/log-flash" 2>/dev/null) bytes"
  (cd firmware && cargo build --release -q --features defmt) || return 1
  cp "$ELF_BUILT" "$OUT/firmware-defmt.elf"
  stop_qemu
  ip netns exec "$NS" timeout -k 5 120 qemu-system-arm -M mps2-an386 -display none -no-reboot \
    -nic tap,ifname=tap0,script=no,downscript=no,model=lan9118,mac=02:00:00:00:00:01 \
    -serial "file:$uart" -kernel "$OUT/firmware-defmt.elf" </dev/null >/dev/null 2>&1 &
  QEMU_PID=$!
  BOOT_T0=$(date +%s.%N)
  first_answer "$BASE/index.html" >/dev/null || { echo "the defmt build does not answer"; return 1; }
  ncurl -o /dev/null "$BASE/text/text.htm" || return 1
  ncurl -g -6 -o /dev/null "http://[fd69::1]/index.html" || return 1
  stop_qemu
  # defmt-print -e ELF < uart.defmt: what a user runs on the host.
  defmt-print -e "$OUT/firmware-defmt.elf" <"$uart" >"$OUT/uart-defmt.txt" 2>&1
  sed 's/^/info: /' "$OUT/uart-defmt.txt" | head -n 8
  grep -q 'address 192.168.69.1/24 (static' "$OUT/uart-defmt.txt" &&
    grep -q 'address fe80::ff:fe00:1/64 (link-local)' "$OUT/uart-defmt.txt" &&
    grep -q 'address fd69::1/64 (fallback' "$OUT/uart-defmt.txt" &&
    grep -q 'GET /text/text.htm 200' "$OUT/uart-defmt.txt" &&
    grep -q '\[fd69::100\]:[0-9]* GET /index.html 200' "$OUT/uart-defmt.txt"
}
MACHINE=mps2-an386 NIC_MODEL=lan9118 FS=fs_image
check_here "defmt build: its log, decoded by defmt-print, has the addresses (IPv4, link-local, fd69::1) and the access log (IPv4 and IPv6)" t_defmt

section "firmware on tap0 with dnsmasq: the offered address, SLAAC from its router advertisements"
UART=$OUT/uart-dhcp.log
# DHCPv4, and router advertisements for fd69::/64 with the A flag and no DHCPv6 (ra-only):
# the firmware's SLAAC address is fd69::ff:fe00:1.
ip netns exec "$NS" dnsmasq --no-daemon --port=0 --interface=tap0 --bind-interfaces \
  --dhcp-range=192.168.69.50,192.168.69.59,255.255.255.0,1h --dhcp-leasefile="$TMPD/leases" \
  --enable-ra --dhcp-range=fd69::,ra-only,64,1h \
  --pid-file="$TMPD/dnsmasq.pid" >"$OUT/dnsmasq.log" 2>&1 &
DNSMASQ_PID=$!
stop_dnsmasq() { stop_pid "$DNSMASQ_PID"; }
ON_CLEANUP+=(stop_dnsmasq)
t_dhcp() {
  local ip secs
  for _ in $(seq 1 100); do grep -q '(dhcp)' "$UART" && break; sleep 0.1; done
  ip=$(sed -n 's/.*address \(192\.168\.69\.5[0-9]\)\/24 (dhcp).*/\1/p' "$UART" | head -n 1)
  [ -n "$ip" ] || { echo "no DHCP address on the UART:"; cat "$UART"; return 1; }
  secs=$(first_answer "http://$ip/index.html") || { echo "no answer at $ip"; return 1; }
  echo "info: took $ip from dnsmasq; first response $secs s after boot"
  ncurl -o "$TMPD/dhcp-index" "http://$ip/" && cmp -s "$TMPD/dhcp-index" "$FS/index.html"
}
# t_mdns: python-zeroconf, from the host side of the tap, resolves smolhttpd.local to the
# address the firmware took from DHCP.
ip -n "$NS" route add 224.0.0.0/4 dev tap0 2>/dev/null
command -v pip >/dev/null && ! python3 -c 'import zeroconf' 2>/dev/null &&
  timeout 300 pip install -q zeroconf >/dev/null 2>&1
t_mdns() {
  local ip got
  python3 -c 'import zeroconf' 2>/dev/null || { echo "python-zeroconf missing (pip install zeroconf)"; return 77; }
  ip=$(sed -n 's/.*address \(192\.168\.69\.5[0-9]\)\/24 (dhcp).*/\1/p' "$UART" | head -n 1)
  [ -n "$ip" ] || { echo "no DHCP address on the UART"; return 1; }
  got=$(ip netns exec "$NS" timeout 15 python3 - <<'PY'
from zeroconf import AddressResolver, IPVersion, Zeroconf
zc = Zeroconf(interfaces=["192.168.69.100"])
r = AddressResolver("smolhttpd.local.")
r.request(zc, 5000)
print(" ".join(r.parsed_addresses(IPVersion.V4Only)))
zc.close()
PY
)
  echo "info: python-zeroconf resolved smolhttpd.local to '$got' (DHCP gave $ip)"
  [ "$got" = "$ip" ] && ncurl -o /dev/null "http://$got/index.html"
}
SLAAC=fd69::ff:fe00:1
t_slaac() {
  local out addr
  for _ in $(seq 1 100); do grep -q '(slaac from' "$UART" && break; sleep 0.1; done
  addr=$(sed -n 's/.*address \(fd69::[0-9a-f:]*\)\/64 (slaac from fe80::[0-9a-f:]*, valid [0-9]* s), serving.*/\1/p' "$UART" | head -n 1)
  [ "$addr" = "$SLAAC" ] || { echo "no SLAAC address $SLAAC on the UART:"; cat "$UART"; return 1; }
  echo "info: $(grep -m1 '(slaac from' "$UART" | sed 's/^\[[^]]*\] *//')"
  grep -q 'address fd69::1/64 (fallback' "$UART" && echo "info: (the fallback fd69::1 came first, and SLAAC's address replaced it)"
  ncurl -g -6 -o "$TMPD/slaac-index" "http://[$addr]/" && cmp -s "$TMPD/slaac-index" "$FS/index.html" ||
    { echo "http://[$addr]/ failed or differs"; return 1; }
  out=$(ncurl -g -6 -o "$TMPD/slaac-big" -w '%{speed_download} %{time_total}' "http://[$addr]/$SPEED_FILE") || return 1
  cmp -s "$TMPD/slaac-big" "$FS/$SPEED_FILE" || { echo "$SPEED_FILE differs over IPv6"; return 1; }
  echo "info: $(echo "$out" | awk -v f="$SPEED_FILE" '{ printf "%s byte-exact: %.2f MB/s (%.2f s)", f, $1 / 1e6, $2 }')"
}
# t_mdns6: python-zeroconf over IPv6 alone (its socket on fd69::100, queries to ff02::fb)
# resolves smolhttpd.local to the SLAAC address (and the link-local one); so do one-shot AAAA
# queries over IPv4 and IPv6; and the name's address serves the index.
t_mdns6() {
  local got
  python3 -c 'import zeroconf' 2>/dev/null || { echo "python-zeroconf missing (pip install zeroconf)"; return 77; }
  got=$(ip netns exec "$NS" timeout 15 python3 - <<'PY'
from zeroconf import AddressResolver, IPVersion, Zeroconf
zc = Zeroconf(interfaces=["fd69::100"], ip_version=IPVersion.V6Only)
r = AddressResolver("smolhttpd.local.")
r.request(zc, 5000)
print(" ".join(sorted(r.parsed_addresses(IPVersion.V6Only))))
zc.close()
PY
)
  echo "info: python-zeroconf over IPv6 resolved smolhttpd.local to '$got'"
  [ "$got" = "$SLAAC fe80::ff:fe00:1" ] || return 1
  t6_mdns_aaaa "$SLAAC" fe80::ff:fe00:1 || return 1
  ncurl -g -6 -o "$TMPD/mdns6-index" "http://[$SLAAC]/index.html" && cmp -s "$TMPD/mdns6-index" "$FS/index.html"
}
for board in mps2-an386 lm3s6965evb; do
  if [ "$board" = mps2-an386 ]; then
    MACHINE=mps2-an386 NIC_MODEL=lan9118 ELF=$OUT/firmware.elf FS=fs_image SPEED_FILE=video/Planeta.mp4
  else
    MACHINE=lm3s6965evb NIC_MODEL=stellaris ELF=$OUT/firmware-lm3s6965.elf FS=$LM3S_FS SPEED_FILE=img/perro.jpg
  fi
  UART=$OUT/uart-dhcp-$board.log
  boot "$UART"
  check "$board: takes the DHCP address and serves there" t_dhcp
  check "$board: answers smolhttpd.local (mDNS) with its DHCP address" t_mdns
  check "$board: takes $SLAAC by SLAAC from dnsmasq's router advertisement; index and $SPEED_FILE byte-exact there" t_slaac
  check "$board: smolhttpd.local resolves to $SLAAC over IPv6 (python-zeroconf) and by one-shot AAAA queries" t_mdns6
  stop_qemu
done
stop_dnsmasq

echo
finish
