#!/usr/bin/env bash
# WER x RTF of Kiki's encoder context on real speech, beside faster-whisper on the same weights
# and clips, in one run (temperature fallback on, 2 threads). This is the measurement the default
# `model.audio_ctx` is chosen by (docs/performance.md).
#   bash tools/parity/context_curve.sh [OUT_DIR]     (default .cache/parity/ctx)
# The grid is `precision beam ctx...` lines; the default is every audio_ctx in {auto, 5, 10, 15,
# 20, full} x {greedy, beam 5} x {fp32, int8} (about 2 hours on 2 cores); set KIKI_CTX_GRID to run
# fewer. A result already in OUT_DIR is kept (delete it to measure again), so an interrupted
# run resumes. faster-whisper runs at each precision and beam before Kiki's contexts for it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/scripts/parity-setup.sh"
out="${1:-$root/.cache/parity/ctx}"
mkdir -p "$out"
py="$root/.cache/fw-venv/bin/python"
real="$root/.cache/parity/real/manifest.jsonl"
grid="${KIKI_CTX_GRID:-fp32 1 auto 5 10 15 20 full
fp32 5 auto 5 10 15 20 full
int8 1 auto 5 10 15 20 full
int8 5 auto 5 10 15 20 full}"
# Built once and run directly: an edit to the sources during the run does not rebuild it.
bench=${KIKI_PARITY_BIN:-}
[ -n "$bench" ] || bench=$(cd "$root" && cargo bench --bench parity --no-run --message-format=json -q \
  | "$py" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("target", {}).get("name") == "parity" and m.get("executable")][-1])')
kiki() { (cd "$root/host" && "$bench" --manifest "$real" --threads 2 "$@"); }
files=()
while read -r kp beam ctxs; do
  [ -n "$kp" ] || continue
  fp=$([ "$kp" = fp32 ] && echo float32 || echo int8)
  f="$out/fw-b$beam-$kp.jsonl"
  if [ ! -s "$f" ]; then
    echo "[ctx] faster-whisper beam $beam $kp" >&2
    "$py" "$root/tools/parity/fw_transcribe.py" --manifest "$real" --beam-size "$beam" \
      --compute-type "$fp" --threads 2 --fallback on >"$f.tmp" && mv "$f.tmp" "$f"
  fi
  files+=("$f")
  for ctx in $ctxs; do
    f="$out/kiki-b$beam-$kp-ctx$ctx.jsonl"
    if [ ! -s "$f" ]; then
      echo "[ctx] kiki beam $beam $kp audio_ctx $ctx" >&2
      kiki --beam "$beam" --precision "$kp" --audio-ctx "$ctx" >"$f.tmp" && mv "$f.tmp" "$f"
    fi
    files+=("$f")
  done
done <<<"$grid"
"$py" "$root/tools/parity/score.py" --manifest "$real" "${files[@]}" | tee "$out/table.txt"
"$py" "$root/tools/parity/score.py" --by-source --manifest "$real" "${files[@]}" >"$out/by-source.txt"
