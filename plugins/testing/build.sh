#!/usr/bin/env bash
# Build the test-only Kiki plugins (hostile segmenters, a wrong-world postprocessor, a shouting
# and a panicking postprocessor, two versions of a deterministic segmenter and one built against
# the frozen 0.1.0 contract, and the Python example postprocessor) for
# wasm32-wasip2 (release) and copy them into OUT_DIR as NAME@VERSION.wasm. They are for the
# host's tests only: plugins/build.sh never installs them.
# Usage: plugins/testing/build.sh [OUT_DIR]   (default .cache/test-plugins)
# Env:   CARGO_TARGET_DIR (default target/)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../.cache/test-plugins}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../../target}"
target=wasm32-wasip2

mkdir -p "$out"
out="$(cd "$out" && pwd)"

# crate : installed file name
plugins=(
  "seg-loop:loop@0.1.0"
  "seg-alloc:alloc@0.1.0"
  "seg-panic:panic@0.1.0"
  "seg-huge:huge@0.1.0"
  "post-wrong-world:wrongworld@0.1.0"
  "seg-echo:echo@0.1.0"
  "seg-echo-v2:echo@0.2.0"
  "seg-v010:oldabi@0.1.0"
  "post-shout:shout@0.1.0"
  "post-panic:panicky@0.1.0"
)

cd "$here/.."
pkgs=()
for entry in "${plugins[@]}"; do pkgs+=(-p "${entry%%:*}"); done
cargo build --quiet --release --target "$target" "${pkgs[@]}"

printf '%-28s %10s\n' "test plugin" "bytes"
for entry in "${plugins[@]}"; do
  crate="${entry%%:*}"
  file="${entry##*:}.wasm"
  wasm="$CARGO_TARGET_DIR/$target/release/${crate//-/_}.wasm"
  magic="$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')"
  if [[ "$magic" != "0061736d0d000100" ]]; then
    echo "error: $wasm is not a wasm component (magic $magic)" >&2
    exit 1
  fi
  install -m 0644 "$wasm" "$out/$file"
  printf '%-28s %10s\n' "$file" "$(stat -c %s "$out/$file")"
done

# The Python example (plugins/examples/postprocessor-python), built with componentize-py from
# PyPI into the set-up's venv, so that the tests load a second-language plugin too.
venv="$here/../../.cache/venv"
if [ ! -x "$venv/bin/componentize-py" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check componentize-py==0.25.1
fi
py_out="$out/python"
mkdir -p "$py_out"
if [ ! -f "$py_out/shout@0.1.0.wasm" ] \
  || [ -n "$(find "$here/../examples/postprocessor-python" "$here/../../wit/kiki.wit" -newer "$py_out/shout@0.1.0.wasm")" ]; then
  COMPONENTIZE_PY="$venv/bin/componentize-py" bash "$here/../examples/postprocessor-python/build.sh" "$py_out" >/dev/null
fi
printf '%-28s %10s\n' "python/shout@0.1.0.wasm" "$(stat -c %s "$py_out/shout@0.1.0.wasm")"
echo "installed into $out"
