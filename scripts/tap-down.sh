#!/usr/bin/env bash
# tap-down.sh [TAP] — remove the TAP interface made by tap-up.sh (ok if already gone).
set -euo pipefail

TAP=${1:-tap0}

if [ "$(id -u)" -ne 0 ]; then
  echo "tap-down: must be root to remove $TAP: run with sudo (sudo $0 $TAP)" >&2
  exit 1
fi
command -v ip >/dev/null || { echo "tap-down: 'ip' not found: apt-get install iproute2" >&2; exit 1; }

if ip link show dev "$TAP" >/dev/null 2>&1; then
  ip tuntap del dev "$TAP" mode tap
  echo "tap-down: $TAP removed"
else
  echo "tap-down: $TAP not present, nothing to do"
fi
