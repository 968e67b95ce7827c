#!/usr/bin/env bash
# tap-down.sh [TAP] — remove the TAP interface made by tap-up.sh (ok if already gone), and what
# `tap-up.sh --publish` added: its nftables table, and IPv4 forwarding if it turned that on.
set -euo pipefail

TAP=${1:-tap0}

if [ "$(id -u)" -ne 0 ]; then
  echo "tap-down: must be root to remove $TAP: run with sudo (sudo $0 $TAP)" >&2
  exit 1
fi
command -v ip >/dev/null || { echo "tap-down: 'ip' not found: apt-get install iproute2" >&2; exit 1; }

table="smolhttpd_${TAP//[^a-zA-Z0-9_]/_}"
if command -v nft >/dev/null && nft list table ip "$table" >/dev/null 2>&1; then
  nft delete table ip "$table"
  echo "tap-down: removed the published port (nft table ip $table)"
fi
state=/run/smolhttpd-$TAP-$(stat -L -c %i /proc/self/ns/net).forward
if [ -e "$state" ]; then
  if [ "$(cat "$state")" = 0 ]; then
    echo 0 >/proc/sys/net/ipv4/ip_forward
    echo "tap-down: IPv4 forwarding off again (tap-up.sh --publish had turned it on)"
  fi
  rm -f "$state"
fi

if ip link show dev "$TAP" >/dev/null 2>&1; then
  ip tuntap del dev "$TAP" mode tap
  echo "tap-down: $TAP removed"
else
  echo "tap-down: $TAP not present, nothing to do"
fi
