#!/usr/bin/env bash
# Creates the two virtualenvs the FunASR client harness (tests/clients/*.py) runs in:
#   .cache/clients/funasr-python  ->  PyPI funasr-python==0.1.5  (run funasr_python.py with it)
#   .cache/clients/funasr-client  ->  PyPI funasr-client==0.1.6  (run funasr_client.py with it)
# Both packages install a top-level module named `funasr_client`, hence two venvs.
#
# Idempotent: a stamp (the hash of this script) marks a finished setup; edit this file to force a
# rebuild. Quiet: pip's output goes to .cache/clients/setup.log and is shown only on failure.
# Concurrent callers (parallel tests) serialize on a lock. PYTHON overrides the interpreter.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
base="$root/.cache/clients"
stamp="$base/.stamp"
log="$base/setup.log"
python="${PYTHON:-python3}"
want="$(sha256sum "$0" | cut -d' ' -f1)"

ready() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
        [[ -x "$base/funasr-python/bin/python" && -x "$base/funasr-client/bin/python" ]]
}

ready && exit 0
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
ready && exit 0 # another caller finished it while we waited
rm -f "$stamp"
: >"$log"

run() {
    if ! "$@" >>"$log" 2>&1; then
        echo "tests/clients/setup.sh: failed: $*" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

venv() {
    rm -rf "$base/$1"
    run "$python" -m venv "$base/$1"
}

pip_install() {
    local dir="$1"
    shift
    run "$base/$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: "$@"
}

# funasr-python 0.1.5 declares librosa, build, twine, aiofiles, python-dotenv, soundfile, numpy,
# pydantic, websockets. The file path (AsyncFunASRClient.recognize_file) imports only librosa
# (audio.py:11, used by librosa.load at audio.py:56), numpy, pydantic (models.py:10) and websockets
# (protocols.py:11); build/twine/aiofiles/dotenv are never imported there (dotenv only in cli.py).
# librosa.load needs numba, scipy, soundfile, audioread, soxr, lazy_loader, joblib, decorator,
# msgpack and pooch at import time, but not scikit-learn, so librosa goes in without its deps too.
venv funasr-python
pip_install funasr-python --no-deps funasr-python==0.1.5 librosa==0.11.0
pip_install funasr-python \
    numpy==2.4.6 scipy==1.17.1 numba==0.68.1 soundfile==0.14.0 audioread==3.1.0 soxr==1.1.0 \
    lazy_loader==0.6 joblib==1.6.0 decorator==5.3.2 msgpack==1.2.4 pooch==1.9.0 \
    typing_extensions==4.16.0 pydantic==2.14.4 websockets==17.4

# funasr-client 0.1.6 needs only websockets and typing-extensions (pyaudio is the `mic` extra).
venv funasr-client
pip_install funasr-client funasr-client==0.1.6 websockets==17.4 typing_extensions==4.16.0

# Prove each venv imports what its script runs (librosa.core.audio is loaded lazily on first use).
run "$base/funasr-python/bin/python" -c \
    'import funasr_client, librosa.core.audio; assert funasr_client.__version__ == "0.1.5"'
run "$base/funasr-client/bin/python" -c \
    'import importlib.metadata as m, funasr_client.file_asr; assert m.version("funasr-client") == "0.1.6"'

echo "$want" >"$stamp"
