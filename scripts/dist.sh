#!/usr/bin/env bash
# What users install and ship: the release binary without its line tables (a sixth of its
# size), with them kept beside it as kiki.debug and linked by --add-gnu-debuglink, so gdb and
# symbolised crash reports still find them. The build keeps line tables for tests and benches.
# Usage: scripts/dist.sh [BINARY] [OUT_DIR]
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/kiki}
out=${2:-dist}
mkdir -p "$out"
objcopy --only-keep-debug "$bin" "$out/kiki.debug"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$out/kiki.debug" "$bin" "$out/kiki"
chmod +x "$out/kiki"
ls -l "$bin" "$out/kiki" "$out/kiki.debug" | awk '{printf "%6.1f MB  %s\n", $5 / 1048576, $9}'
