#!/usr/bin/env python3
"""The synthetic set: tests/data/sentences.txt spoken by espeak-ng, as 16 kHz mono WAV + manifest.

Same command as the tests' speak() (tests/common/mod.rs): `espeak-ng -v en-us -w OUT TEXT`.
espeak-ng writes 22.05 kHz; sox converts to 16 kHz 16-bit (no dither, so it is repeatable).
The tests resample in process (rubato) instead, so samples differ slightly from theirs, but
every engine in the bench reads these same 16 kHz files.
"""
import argparse
import json
import os
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", default=os.path.join(ROOT, "tests/data/sentences.txt"))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = [s.strip() for s in open(args.sentences) if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "s.wav")
        for i, text in enumerate(lines, 1):
            rel = f"s{i:02d}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", raw, text], check=True)
            subprocess.run(["sox", "-V1", "-D", raw, "-r", "16000", "-c", "1", "-b", "16", os.path.join(args.out, rel)],
                           check=True)
            rows.append({"clip": rel, "text": text, "source": "espeak-ng"})
    with open(os.path.join(args.out, "manifest.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"{len(rows)} synthetic clips in {args.out}")


if __name__ == "__main__":
    main()
