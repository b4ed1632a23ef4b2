#!/usr/bin/env bash
# Build the default Kiki plugins for wasm32-wasip2 (release) and install them as
# NAME@VERSION.wasm + NAME@VERSION.toml into the directory given as $1.
# Usage: plugins/build.sh [OUT_DIR]   (default .cache/plugins)
# Env:   CARGO_TARGET_DIR (default target/)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../.cache/plugins}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../target}"
target=wasm32-wasip2

mkdir -p "$out"
out="$(cd "$out" && pwd)"

# crate dir : crate name (underscored artefact)
plugins=(
  "segmenter-vad:segmenter_vad"
  "postprocessor-text:postprocessor_text"
  "router-default:router_default"
)

cd "$here"
pkgs=()
for entry in "${plugins[@]}"; do pkgs+=(-p "${entry%%:*}"); done
cargo build --quiet --release --target "$target" "${pkgs[@]}"

printf '%-28s %10s\n' "plugin" "bytes"
for entry in "${plugins[@]}"; do
  dir="${entry%%:*}"
  artefact="${entry##*:}"
  manifest="$here/$dir/plugin.toml"
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
  version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
  wasm="$CARGO_TARGET_DIR/$target/release/$artefact.wasm"
  magic="$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')"
  if [[ "$magic" != "0061736d0d000100" ]]; then
    echo "error: $wasm is not a wasm component (magic $magic)" >&2
    exit 1
  fi
  install -m 0644 "$wasm" "$out/$name@$version.wasm"
  install -m 0644 "$manifest" "$out/$name@$version.toml"
  printf '%-28s %10s\n' "$name@$version.wasm" "$(stat -c %s "$out/$name@$version.wasm")"
done
echo "installed into $out"
