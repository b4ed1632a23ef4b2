#!/usr/bin/env python3
"""Real English recordings with reference transcripts, from Debian packages, as 16 kHz mono WAV.

scripts/parity-setup.sh downloads the packages (`apt-get download`) and unpacks them with
`dpkg-deb -x` into --root; this script writes --out/{pocketsphinx,asterisk}/*.wav and
--out/manifest.jsonl ({"clip": path relative to --out, "text": reference, "source": set}).
Needs PyAV (in .cache/fw-venv) for the G.722 prompts.

Sources (nothing is committed; the clips live in the git-ignored .cache):
- pocketsphinx-testdata 0.8+5prealpha+1-15 (BSD-2-Clause, CMU / Alpha Cephei):
  /usr/share/pocketsphinx/test/data/librivox/*.wav (a LibriVox reader, Sense and Sensibility,
  transcripts in librivox/transcription), cards/*.wav (cards.transcription) and goforward.raw
  ("go forward ten meters", goforward.gram), all 16 kHz 16-bit.
- asterisk-core-sounds-en-g722 1.6.1-1 (CC-BY-SA-3.0, recorded by Allison Smith, Digium):
  /usr/share/asterisk/sounds/en_US_f_Allison/*.g722 (G.722, 16 kHz wideband); transcripts from
  asterisk-core-sounds-en 1.6.1-1, /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz.
  Only prompts whose text is a plain sentence (no digits, brackets, ellipses; >= 6 words) and
  2-15 s long are used, every 4th of those in name order: about 25 clips.
"""
import argparse
import gzip
import json
import os
import re
import wave

import numpy as np

PS = "usr/share/pocketsphinx/test/data"
AST = "usr/share/asterisk/sounds/en_US_f_Allison"
AST_TEXT = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"


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


def asterisk(root, out, every=4):
    import av

    candidates = []
    with gzip.open(os.path.join(root, AST_TEXT), "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = (s.strip() for s in line.split(":", 1))
            src = os.path.join(root, AST, name + ".g722")
            if re.search(r"[0-9\[\]/(]|\.\.\.", text) or len(text.split()) < 6 or not os.path.exists(src):
                continue
            if 2.0 <= os.path.getsize(src) / 8000 <= 15.0:  # G.722: 8000 bytes a second
                candidates.append((name, text, src))
    rows = []
    for name, text, src in sorted(candidates)[::every]:
        with av.open(src, format="g722") as c:
            pcm = np.concatenate([fr.to_ndarray().reshape(-1) for fr in c.decode(audio=0)])
        rel = f"asterisk/{name.replace('/', '-')}.wav"
        write_wav(os.path.join(out, rel), pcm)
        rows.append({"clip": rel, "text": text, "source": "asterisk"})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder the .deb files were unpacked into")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows = pocketsphinx(args.root, args.out) + asterisk(args.root, args.out)
    tmp = os.path.join(args.out, "manifest.jsonl.tmp")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, os.path.join(args.out, "manifest.jsonl"))
    print(f"{len(rows)} real clips in {args.out}")


if __name__ == "__main__":
    main()
