#!/usr/bin/env bash
# tap-up.sh [--publish PORT] [TAP] — create (or refresh) the TAP interface smolhttpd talks
# through.
#
#   TAP        interface name (default tap0)
#   HOST_CIDR  address of the kernel side of the tap (default 192.168.69.100/24)
#   HOST_CIDR6 its IPv6 address (default fd69::100/64; `none`: no IPv6 address but the
#              kernel's link-local one). Added without duplicate address detection (`nodad`),
#              so it is usable at once.
#   MTU        link MTU (default 1500)
#   --publish PORT  also make HOST_ADDRESS:PORT, on every address of this host, reach the
#              server's port 80 (SERVER_IP, default 192.168.69.1) from other machines: an
#              nftables table of its own (`ip smolhttpd_TAP`: DNAT in prerouting, and in output
#              for this host's own connections to its LAN address) and IPv4 forwarding on. The
#              client's own address stays visible to the server (no masquerade: the server's
#              default route is this host). tap-down.sh removes the table and turns forwarding
#              back off if this script turned it on.
#
# The tap is owned by $SUDO_USER (root if unset), so `cargo run` needs no root
# afterwards. Safe to run twice: an existing tap just gets its address, MTU and
# state re-applied. Works unchanged under `ip netns exec NS`.
set -euo pipefail

PUBLISH=
if [ "${1:-}" = --publish ]; then
  [ $# -ge 2 ] || { echo "tap-up: --publish needs a PORT" >&2; exit 1; }
  PUBLISH=$2
  shift 2
fi
TAP=${1:-tap0}
SERVER_IP=${SERVER_IP:-192.168.69.1}
HOST_CIDR=${HOST_CIDR:-192.168.69.100/24}
HOST_CIDR6=${HOST_CIDR6:-fd69::100/64}
MTU=${MTU:-1500}
OWNER=${SUDO_USER:-root}

die() { echo "tap-up: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  die "must be root to create $TAP: run with sudo (sudo $0 $TAP)"
fi
command -v ip >/dev/null || die "'ip' not found: apt-get install iproute2"
case $MTU in ''|*[!0-9]*) die "MTU must be a number, got '$MTU'";; esac
case $HOST_CIDR in */*) ;; *) die "HOST_CIDR must be ADDR/PREFIX, got '$HOST_CIDR'";; esac
case $HOST_CIDR6 in none|*:*/*) ;; *) die "HOST_CIDR6 must be ADDR/PREFIX (IPv6) or none, got '$HOST_CIDR6'";; esac
id -u "$OWNER" >/dev/null 2>&1 || die "owner '$OWNER' is not a known user"

if ip link show dev "$TAP" >/dev/null 2>&1; then
  if ! ip -details link show dev "$TAP" | grep -q 'tun type tap'; then
    die "$TAP exists but is not a tap device"
  fi
  echo "tap-up: $TAP already exists, re-applying settings"
  # The owner of an existing tap cannot be changed without recreating it
  # (which would cut off a server holding it open): report the real one.
  cur_uid=$(ip -details link show dev "$TAP" | sed -n 's/.* user \([^ ]*\).*/\1/p')
  if [ -n "$cur_uid" ]; then
    cur_owner=$(id -nu "$cur_uid" 2>/dev/null || echo "$cur_uid")
    if [ "$cur_owner" != "$OWNER" ]; then
      echo "tap-up: note: $TAP stays owned by $cur_owner (run tap-down.sh first to change owner to $OWNER)" >&2
      OWNER=$cur_owner
    fi
  fi
else
  ip tuntap add dev "$TAP" mode tap user "$OWNER"
fi

ip link set dev "$TAP" mtu "$MTU"
# 'replace' makes re-adding the same address a no-op instead of an error; an
# address left by an earlier run with another HOST_CIDR is removed.
ip addr replace "$HOST_CIDR" dev "$TAP"
for old in $(ip -4 -o addr show dev "$TAP" | awk '{print $4}'); do
  [ "$old" = "$HOST_CIDR" ] || ip addr del "$old" dev "$TAP"
done
if [ "$HOST_CIDR6" != none ]; then
  if [ "$(cat /proc/sys/net/ipv6/conf/"$TAP"/disable_ipv6 2>/dev/null || echo 1)" = 1 ]; then
    die "IPv6 is disabled on $TAP (sysctl net.ipv6.conf.$TAP.disable_ipv6); enable it or run with HOST_CIDR6=none"
  fi
  ip -6 addr replace "$HOST_CIDR6" dev "$TAP" nodad
  for old in $(ip -6 -o addr show dev "$TAP" scope global | awk '{print $4}'); do
    [ "$old" = "$HOST_CIDR6" ] || ip -6 addr del "$old" dev "$TAP"
  done
fi
ip link set dev "$TAP" up

v6=" and $HOST_CIDR6"; [ "$HOST_CIDR6" != none ] || v6=
echo "tap-up: $TAP ready: host $HOST_CIDR$v6, mtu $MTU, owner $OWNER"

if [ -n "$PUBLISH" ]; then
  case $PUBLISH in ''|*[!0-9]*) die "--publish PORT must be a port number, got '$PUBLISH'";; esac
  [ "$PUBLISH" -ge 1 ] && [ "$PUBLISH" -le 65535 ] || die "--publish PORT must be 1-65535"
  command -v nft >/dev/null || die "'nft' not found: apt-get install nftables"
  table="smolhttpd_${TAP//[^a-zA-Z0-9_]/_}"
  # Per network namespace (sysctls are), so two namespaces never mix their notes.
  state=/run/smolhttpd-$TAP-$(stat -L -c %i /proc/self/ns/net).forward
  # Remember whether forwarding was off, once (a second run must not forget it).
  [ -e "$state" ] || cat /proc/sys/net/ipv4/ip_forward >"$state"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  nft delete table ip "$table" 2>/dev/null || true
  printf '%s\n' \
    "table ip $table {" \
    "  chain prerouting {" \
    "    type nat hook prerouting priority -100; policy accept;" \
    "    fib daddr type local tcp dport $PUBLISH dnat to $SERVER_IP:80" \
    "  }" \
    "  chain output {" \
    "    type nat hook output priority -100; policy accept;" \
    "    fib daddr type local ip daddr != 127.0.0.0/8 tcp dport $PUBLISH dnat to $SERVER_IP:80" \
    "  }" \
    "}" | nft -f -
  echo "tap-up: published: port $PUBLISH on every address of this host reaches" \
    "http://$SERVER_IP:80/ (nft table ip $table; IPv4 forwarding on, was $(cat "$state"))"
fi
