#!/usr/bin/env bash
# qemu-guest.sh — build (once) a tiny Linux guest for QEMU network tests. No root needed.
#
# Usage:  scripts/qemu-guest.sh          build if needed, print the kernel and initrd paths
#         QEMU_GUEST_REBUILD=1 scripts/qemu-guest.sh    build again from scratch
#
# Output, in .cache/qemu-guest/ (ignored by git):
#   vmlinuz     Debian's kernel (the one linux-image-amd64 points to), downloaded with
#               `apt-get download` and unpacked with dpkg-deb; nothing is installed
#   initrd.img  busybox-static (also `apt-get download`) + the kernel's virtio-net modules
#               + scripts/qemu/init, which reads guest_ip=, guest_gw=, guest_url=...,
#               guest_chat= from the kernel command line, fetches the URLs with wget, prints
#               "SHA256 <hash> <url>" for each and "CHAT <reply>", then "DONE" and powers off
#
# Boot it (console on ttyS0, TCG works; see scripts/qemu-test.sh and the README):
#   qemu-system-x86_64 -m 256 -nographic -no-reboot -kernel .cache/qemu-guest/vmlinuz \
#     -initrd .cache/qemu-guest/initrd.img -append 'console=ttyS0 panic=-1 guest_url=...' \
#     -netdev ...,id=n0 -device virtio-net-pci,netdev=n0
#
# Env: QEMU_GUEST_DIR (default .cache/qemu-guest), QEMU_GUEST_KERNEL (a linux-image-*
# package name, default: what linux-image-amd64 depends on).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${QEMU_GUEST_DIR:-$ROOT/.cache/qemu-guest}
INIT=$ROOT/scripts/qemu/init
# Load order; a module built into the kernel is skipped.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"

say() { echo "qemu-guest: $*" >&2; }
die() { echo "qemu-guest: $*" >&2; exit 1; }

for c in apt-get apt-cache dpkg-deb sha256sum gzip; do
  command -v "$c" >/dev/null || die "'$c' not found (this script needs a Debian-like system)"
done
[ -f "$INIT" ] || die "$INIT is missing"

# The stamp names what the guest was built from; a different init or kernel rebuilds it.
init_sum=$(cat "$INIT" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
if [ -z "${QEMU_GUEST_REBUILD:-}" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] &&
   [ -f "$OUT/stamp" ] && grep -qx "init $init_sum" "$OUT/stamp" &&
   { [ -z "${QEMU_GUEST_KERNEL:-}" ] || grep -qx "kernel $QEMU_GUEST_KERNEL" "$OUT/stamp"; }; then
  say "up to date ($(sed -n 's/^kernel //p' "$OUT/stamp"))"
  echo "$OUT/vmlinuz"
  echo "$OUT/initrd.img"
  exit 0
fi

# apt-get download needs package lists; a fresh container may have none.
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/{print $2}'; }
if [ -z "$(candidate busybox-static)" ] || [ "$(candidate busybox-static)" = "(none)" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "no package lists: apt-get update"
    apt-get update -qq
  else
    die "apt knows no busybox-static: run 'sudo apt-get update' first"
  fi
fi
KPKG=${QEMU_GUEST_KERNEL:-$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[ -n "$KPKG" ] || die "cannot find the current kernel package (apt-cache depends linux-image-amd64)"
KVER=${KPKG#linux-image-}

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say "building from $KPKG and busybox-static in $OUT"

# Debs are kept in the cache, so a rebuild (new init) needs no network.
DEBS=$OUT/debs
mkdir -p "$DEBS"
fetch() { # fetch PKG: the .deb of PKG's candidate version, downloaded once
  local pkg=$1 ver deb
  ver=$(candidate "$pkg")
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then die "apt has no candidate for $pkg"; fi
  for deb in "$DEBS/${pkg}_${ver//:/%3a}_"*.deb ""; do [ -f "$deb" ] && break; done
  if [ -z "$deb" ]; then
    say "apt-get download $pkg=$ver"
    (cd "$DEBS" && timeout 600 apt-get download -q "$pkg=$ver") >"$WORK/apt.log" 2>&1 ||
      { cat "$WORK/apt.log" >&2; die "apt-get download $pkg failed"; }
    for deb in "$DEBS/${pkg}_${ver//:/%3a}_"*.deb ""; do [ -f "$deb" ] && break; done
  fi
  [ -n "$deb" ] || die "no .deb for $pkg=$ver in $DEBS after downloading it"
  echo "$deb"
}
kdeb=$(fetch "$KPKG")
bdeb=$(fetch busybox-static)

mkdir -p "$WORK/k" "$WORK/bb"
say "unpacking $(basename "$kdeb")"
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$WORK/k" --wildcards \
  './boot/vmlinuz-*' "./lib/modules/$KVER/modules.builtin" "./lib/modules/$KVER/kernel/drivers/*" \
  "./lib/modules/$KVER/kernel/net/core/*"
dpkg-deb -x "$bdeb" "$WORK/bb"
BB=$WORK/bb/bin/busybox
[ -x "$BB" ] || die "no busybox in $(basename "$bdeb")"

# The initramfs tree.
R=$WORK/root
mkdir -p "$R/bin" "$R/lib/modules" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
cp "$BB" "$R/bin/busybox"
cp "$INIT" "$R/init"
chmod 755 "$R/init" "$R/bin/busybox"
: >"$R/lib/modules/order"
KMOD=$WORK/k/lib/modules/$KVER
for m in $MODULES; do
  f=$(find "$KMOD/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
  if [ -z "$f" ]; then
    if grep -q "/$m\.ko$" "$KMOD/modules.builtin"; then
      say "module $m is built in"
      continue
    fi
    die "module $m is neither in $KPKG nor built in"
  fi
  case $f in
    *.xz) xz -dc "$f" >"$R/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" >"$R/lib/modules/$m.ko" ;;
    *) cp "$f" "$R/lib/modules/$m.ko" ;;
  esac
  echo "$m" >>"$R/lib/modules/order"
done

# busybox's own cpio: no host cpio needed, and -R gives root ownership without being root.
(cd "$R" && find . | sort | "$BB" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 >"$WORK/initrd.img"
cp "$WORK"/k/boot/vmlinuz-* "$WORK/vmlinuz"
mv "$WORK/vmlinuz" "$OUT/vmlinuz"
mv "$WORK/initrd.img" "$OUT/initrd.img"
printf 'kernel %s\ninit %s\nbusybox %s\n' "$KPKG" "$init_sum" "$(basename "$bdeb")" >"$OUT/stamp"
say "ready: $(du -h "$OUT/vmlinuz" | cut -f1) kernel, $(du -h "$OUT/initrd.img" | cut -f1) initrd, modules: $(tr '\n' ' ' <"$R/lib/modules/order")"
echo "$OUT/vmlinuz"
echo "$OUT/initrd.img"
