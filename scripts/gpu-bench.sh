#!/usr/bin/env bash
# The CUDA checks as one prepared run, for a machine with an NVIDIA GPU and driver:
#   1. the CUDA build of ONNX Runtime and the CUDA 13 wheels (scripts/setup-gpu.sh);
#   2. `kiki transcribe` on CUDA (a provider that cannot load is an error, never the CPU);
#   3. the inference bench on CUDA, batches 1 to 32, both models (the issue's GPU table).
# Output goes to stdout and, when OUT is set (the device tool's folder), to $OUT/gpu-bench.txt.
#   bash scripts/gpu-bench.sh [--quick]
# Needs `make setup` (models, release build) first; everything else it installs itself.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
log="${OUT:-$root/.cache}/gpu-bench.txt"
exec > >(tee "$log") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || { echo "no NVIDIA driver"; exit 1; }
bash scripts/setup-gpu.sh
# shellcheck disable=SC1091
source .cache/gpu.env
cargo build --release --bin kiki
wav=$(mktemp --suffix .wav)
espeak-ng -v en-us -s 150 -g 4 -w "$wav" "The birch canoe slid on the smooth planks."
./target/release/kiki transcribe "$wav"
quick=()
[ "${1:-}" = --quick ] && quick=(--quick)
cargo bench --bench inference -- --provider cuda --batches 1,2,4,8,16,32 --runs 3 --models tiny.en,base "${quick[@]}"
