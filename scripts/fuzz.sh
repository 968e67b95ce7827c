#!/usr/bin/env bash
# fuzz.sh [SECONDS [TARGET...]]: runs the cargo-fuzz targets in fuzz/ (default: all of them,
# head range chat server frames mdns ws_frames) for SECONDS each (default 60) and prints how many inputs each
# executed. Two invocations with different targets may run side by side (one per core).
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the machine's stable toolchain
# accept them. Exits non-zero on the first crash (the input is kept under
# fuzz/artifacts/TARGET/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(head range chat server frames mdns ws_frames)
case $seconds in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;; esac
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -O >/dev/null 2>&1 || cargo fuzz build -O
mkdir -p ../target/fuzz
status=0
for target in "${targets[@]}"; do
  [ -f "fuzz_targets/$target.rs" ] || { echo "fuzz.sh: no target '$target' in fuzz/fuzz_targets/" >&2; exit 2; }
  log=../target/fuzz/$target.log
  if cargo fuzz run -O "$target" -- -max_total_time="$seconds" -max_len=4096 \
      -detect_leaks=1 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    printf 'ok   - fuzz %-7s %10s executions in %ss\n' "$target" "$runs" "$seconds"
  else
    printf 'FAIL - fuzz %-7s crashed; see target/fuzz/%s.log and fuzz/artifacts/%s/\n' "$target" "$target" "$target"
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5
    status=1
  fi
done
exit $status
