#!/usr/bin/env bash
# Kiki and faster-whisper side by side, in one run on one machine: the same clips, the same
# tiny.en weights, greedy and beam 5, fp32 and int8, 2 threads (beam 5 int8 also at 1 thread),
# temperature fallback on; then Kiki's cross-session batching (8 clips per call). Prints the
# scored table (WER per set, median RTF, throughput) and leaves the JSON lines in OUT.
#   bash tools/parity/run.sh [OUT_DIR]          (default .cache/parity/run)
# Engines alternate config by config so that machine noise hits both alike.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/scripts/parity-setup.sh"
out="${1:-$root/.cache/parity/run}"
mkdir -p "$out"
py="$root/.cache/fw-venv/bin/python"
synth="$root/.cache/parity/synth/manifest.jsonl"
real="$root/.cache/parity/real/manifest.jsonl"
(cd "$root" && cargo bench --bench parity --no-run -q)
kiki() { (cd "$root" && cargo bench -q --bench parity -- --manifest "$synth" --manifest "$real" "$@"); }
files=()
for cfg in "1 fp32 float32 2" "1 int8 int8 2" "5 fp32 float32 2" "5 int8 int8 2" "5 int8 int8 1"; do
  read -r beam kp fp threads <<<"$cfg"
  echo "[parity] beam $beam $kp, $threads threads" >&2
  "$py" "$root/tools/parity/fw_transcribe.py" --manifest "$synth" --manifest "$real" --beam-size "$beam" \
    --compute-type "$fp" --threads "$threads" --fallback on >"$out/fw-b$beam-$kp-t$threads.jsonl"
  kiki --beam "$beam" --precision "$kp" --threads "$threads" --audio-ctx full >"$out/kiki-b$beam-$kp-t$threads.jsonl"
  files+=("$out/fw-b$beam-$kp-t$threads.jsonl" "$out/kiki-b$beam-$kp-t$threads.jsonl")
done
# Kiki's defaults beside them: encoder context floored at 10 s instead of always 30 s.
for beam in 1 5; do
  kiki --beam "$beam" --precision int8 --threads 2 --audio-ctx 10 >"$out/kiki-b$beam-int8-t2-ctx10.jsonl"
  files+=("$out/kiki-b$beam-int8-t2-ctx10.jsonl")
done
# Batching across sessions: 8 clips per call (faster-whisper runs them one after another).
for beam in 1 5; do
  kiki --beam "$beam" --precision int8 --threads 2 --audio-ctx full --batch 8 >"$out/kiki-b$beam-int8-t2-batch8.jsonl"
  files+=("$out/kiki-b$beam-int8-t2-batch8.jsonl")
done
"$py" "$root/tools/parity/score.py" --manifest "$synth" --manifest "$real" "${files[@]}" | tee "$out/table.txt"
