#!/usr/bin/env bash
# faster-whisper side of the parity bench: greedy and beam 5 x float32 and int8 at 2 threads, and
# beam 5 int8 at 1 thread, fallback on, on the synthetic and the real set; then WER / RTF per set.
#   bash tools/parity/bench.sh [OUT_DIR]      (default .cache/parity/results)
# Run it on an idle machine: timings share the CPU with anything else running.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/scripts/parity-setup.sh"
out="${1:-$root/.cache/parity/results}"
mkdir -p "$out"
py="$root/.cache/fw-venv/bin/python"
manifests=(--manifest "$root/.cache/parity/synth/manifest.jsonl" --manifest "$root/.cache/parity/real/manifest.jsonl")
results=()
for cfg in "1 float32 2" "1 int8 2" "5 float32 2" "5 int8 2" "5 int8 1"; do
  read -r beam ct threads <<<"$cfg"
  name="fw-b${beam}-${ct}-t${threads}"
  echo "[bench] $name (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  "$py" "$root/tools/parity/fw_transcribe.py" "${manifests[@]}" --beam-size "$beam" \
    --compute-type "$ct" --threads "$threads" --fallback on >"$out/$name.jsonl"
  results+=("$out/$name.jsonl")
done
"$py" "$root/tools/parity/score.py" "${manifests[@]}" "${results[@]}"
"$py" "$root/tools/parity/score.py" "${manifests[@]}" --by-source "${results[@]}" >"$out/by-source.txt"
