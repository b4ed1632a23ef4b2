#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20): `make test` runs it short; run it longer
# by hand, e.g. `bash protocol/fuzz/run.sh 600`. Installs cargo-fuzz when missing. The targets
# build only the kiki-protocol crate, so this takes seconds, not a wasmtime build.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] cargo install cargo-fuzz" >&2
  cargo install --locked cargo-fuzz@0.13.2 >&2
fi
# Without a sanitizer cargo-fuzz needs only stable flags (coverage instrumentation), so the
# machine's stable toolchain does; the build goes to a target directory of its own.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/../../target}/fuzz"
mkdir -p corpus artifacts
status=0
for target in native_message audio_frames adapters; do
  mkdir -p "corpus/$target"
  echo "[fuzz] $target for ${seconds}s" >&2
  if ! cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -artifact_prefix="artifacts/$target-" 2>"artifacts/$target.log"; then
    echo "[fuzz] $target FAILED; see protocol/fuzz/artifacts/$target.log" >&2
    tail -n 30 "artifacts/$target.log" >&2
    status=1
  else
    grep -E "^Done|#[0-9]+.*DONE" "artifacts/$target.log" | tail -n 1 >&2 || true
  fi
done
exit $status
