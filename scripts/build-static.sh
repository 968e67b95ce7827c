#!/usr/bin/env bash
# build-static.sh [CARGO BUILD ARGS...] — a statically linked smolhttpd (musl), path on stdout.
#
# Installs what is missing: the rustup target <arch>-unknown-linux-musl (rustup target add) and
# musl-gcc (apt-get install musl-tools; root only for that), then runs
#
#   cargo build --release --target <arch>-unknown-linux-musl --bin smolhttpd [ARGS...]
#
# and prints the path of the binary (the only line on stdout; progress and cargo's messages go
# to stderr). The environment is passed through: CARGO_TARGET_DIR for another target folder,
# SMOLHTTPD_FS_IMAGE for another image, as for a normal build.
#
# The tun-tap crate compiles C that includes Linux kernel headers, which musl-gcc does not
# search; CFLAGS_<arch>_unknown_linux_musl (unless set by the caller) adds the system's
# /usr/include and /usr/include/<arch>-linux-gnu after musl's own headers.
#
# The static binary has no libc.so/ld.so mappings: with the default image its VmRSS is about
# 1.5 MB lower than the glibc build's (see scripts/bench.sh, "RSS, default image, static").
#
# Exit status: cargo's when the build fails; 2 when something cannot be installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { echo "build-static: $*" >&2; }
die() { echo "build-static: $*" >&2; exit 2; }

ARCH=$(uname -m)
TARGET=$ARCH-unknown-linux-musl

# cargo and rustup from ~/.cargo/bin when they are not on PATH (e.g. under sudo).
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install rustup (https://rustup.rs)"

if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -x "$TARGET" >/dev/null; then
    say "rustup target add $TARGET"
    rustup target add "$TARGET" >&2 || die "rustup target add $TARGET failed"
  fi
else
  say "rustup not found: assuming the Rust toolchain has the $TARGET standard library"
fi

if ! command -v musl-gcc >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "musl-gcc not found: run as root, or apt-get install musl-tools"
  command -v apt-get >/dev/null 2>&1 || die "musl-gcc not found and no apt-get: install musl (musl-gcc)"
  say "apt-get install musl-tools"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends musl-tools; } >&2 ||
    die "apt-get install musl-tools failed"
  command -v musl-gcc >/dev/null 2>&1 || die "musl-tools installed, but musl-gcc is not on PATH"
fi

CFLAGS_VAR=CFLAGS_${TARGET//-/_}
if [ -z "${!CFLAGS_VAR:-}" ]; then
  export "$CFLAGS_VAR=-idirafter /usr/include -idirafter /usr/include/$ARCH-linux-gnu"
fi

say "cargo build --release --target $TARGET --bin smolhttpd $*"
# cargo's JSON messages tell where the binary is, whatever the target folder or profile.
BIN=$(cargo build --release --target "$TARGET" --bin smolhttpd --message-format=json-render-diagnostics "$@" |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
{ [ -n "$BIN" ] && [ -x "$BIN" ]; } || die "cargo did not report the smolhttpd binary"
echo "$BIN"
