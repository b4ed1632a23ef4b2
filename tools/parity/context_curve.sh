#!/usr/bin/env bash
# WER x RTF of Kiki's encoder context on real speech, beside faster-whisper on the same weights
# and clips, in one run: audio_ctx in {auto, 5, 10, 15, 20, full} x {greedy, beam 5} x {fp32, int8}
# (temperature fallback on, 2 threads), faster-whisper greedy and beam 5 in fp32 and int8. This
# is the measurement the default `model.audio_ctx` is chosen by (docs/performance.md).
#   bash tools/parity/context_curve.sh [OUT_DIR]     (default .cache/parity/ctx)
# Engines alternate config by config so that machine noise hits both alike.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/scripts/parity-setup.sh"
out="${1:-$root/.cache/parity/ctx}"
mkdir -p "$out"
py="$root/.cache/fw-venv/bin/python"
real="$root/.cache/parity/real/manifest.jsonl"
(cd "$root" && cargo bench --bench parity --no-run -q)
kiki() { (cd "$root" && cargo bench -q --bench parity -- --manifest "$real" --threads 2 "$@"); }
files=()
for prec in "fp32 float32" "int8 int8"; do
  read -r kp fp <<<"$prec"
  for beam in 1 5; do
    echo "[ctx] faster-whisper beam $beam $kp" >&2
    "$py" "$root/tools/parity/fw_transcribe.py" --manifest "$real" --beam-size "$beam" \
      --compute-type "$fp" --threads 2 --fallback on >"$out/fw-b$beam-$kp.jsonl"
    files+=("$out/fw-b$beam-$kp.jsonl")
    for ctx in auto 5 10 15 20 full; do
      echo "[ctx] kiki beam $beam $kp audio_ctx $ctx" >&2
      kiki --beam "$beam" --precision "$kp" --audio-ctx "$ctx" >"$out/kiki-b$beam-$kp-ctx$ctx.jsonl"
      files+=("$out/kiki-b$beam-$kp-ctx$ctx.jsonl")
    done
  done
done
"$py" "$root/tools/parity/score.py" --manifest "$real" "${files[@]}" | tee "$out/table.txt"
"$py" "$root/tools/parity/score.py" --by-source --manifest "$real" "${files[@]}" >"$out/by-source.txt"
