#!/usr/bin/env bash
# GPU set-up (on request, not part of `make setup`): the CUDA build of ONNX Runtime 1.31.1 and
# the CUDA 13 / cuDNN 9 libraries it needs, all from PyPI wheels, into .cache/venv-gpu; then
# .cache/gpu.env, which points kiki at them:
#   source .cache/gpu.env && ./target/release/kiki up      (model.provider = cuda)
# Needs an NVIDIA driver for CUDA 13 on the machine. When CUDA cannot load, kiki says why and
# exits non-zero; it never falls back to the CPU.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache"
log() { printf '[setup-gpu] %s\n' "$*" >&2; }
venv="$cache/venv-gpu"
pin="onnxruntime-gpu[cuda,cudnn]==1.31.1"
if [ "$(cat "$venv/.pin" 2>/dev/null)" != "$pin" ]; then
  log "installing $pin (CUDA 13 and cuDNN wheels: a few GB)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$pin"
  echo "$pin" > "$venv/.pin"
fi
site=$("$venv/bin/python" -c 'import onnxruntime, os; print(os.path.dirname(os.path.dirname(onnxruntime.__file__)))')
lib="$site/onnxruntime/capi/libonnxruntime.so.1.31.1"
[ -f "$lib" ] || { log "missing $lib"; exit 1; }
# Every lib folder of the nvidia-* wheels: the CUDA provider dlopens them by name.
libdirs=$(find "$site/nvidia" -type d -name lib 2>/dev/null | sort | paste -sd: -)
cat > "$cache/gpu.env" <<ENV
# Written by scripts/setup-gpu.sh: kiki on CUDA with the wheels in $venv.
export KIKI_MODEL__PROVIDER=cuda
export KIKI_MODEL__ORT_LIBRARY=$lib
export LD_LIBRARY_PATH=$libdirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
ENV
log "ready: source .cache/gpu.env (provider cuda, ONNX Runtime $lib)"
