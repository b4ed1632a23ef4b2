#!/usr/bin/env bash
# Build the Python example postprocessor into shout@0.1.0.wasm (+ its manifest) with
# componentize-py. Not part of the default plugins, nor of `make test`.
# Needs:  componentize-py on PATH (pip install componentize-py==0.25.1), or COMPONENTIZE_PY=path.
# Usage:  plugins/examples/postprocessor-python/build.sh [OUT_DIR]   (default .cache/examples)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../../.cache/examples}"
cpy="${COMPONENTIZE_PY:-componentize-py}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

cd "$here"
"$cpy" -d "$here/../../../wit/kiki.wit" -w postprocessor-plugin componentize app -o "$out/shout@0.1.0.wasm"
install -m 0644 "$here/plugin.toml" "$out/shout@0.1.0.toml"
magic="$(head -c 8 "$out/shout@0.1.0.wasm" | od -An -tx1 | tr -d ' \n')"
[[ "$magic" == "0061736d0d000100" ]] || { echo "error: not a wasm component (magic $magic)" >&2; exit 1; }
echo "built $out/shout@0.1.0.wasm ($(stat -c %s "$out/shout@0.1.0.wasm") bytes)"
