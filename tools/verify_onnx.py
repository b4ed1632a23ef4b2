#!/usr/bin/env python3
"""End-to-end check of the converted Whisper ONNX graphs: mel_ref -> encoder -> greedy decode.

  verify_onnx.py --model DIR [--wav IN.wav] [--int8] [--audio-ctx F]

Without --wav, speaks a test sentence with espeak-ng. --audio-ctx auto picks a shortened
mel window covering the speech (like whisper.cpp's audio_ctx) instead of the full 3000 frames.
Also checks that one cache-less decoder call matches the incremental KV-cache path.
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mel_ref import HOP, log_mel, read_wav  # noqa: E402

DEFAULT_TEXT = ("The quick brown fox jumps over the lazy dog. "
                "Please call Stella and ask her to bring these things with her from the store. "
                "She sells sea shells by the sea shore.")
MAX_TOKENS = 224


def gpt2_byte_decoder():
    """Inverse of GPT-2's bytes_to_unicode: printable stand-in character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def speak(text, path):
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # shared 2-core machine
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def empty_cache(cfg, batch=1):
    return np.zeros((cfg["n_text_layer"], batch, 0, cfg["n_state"]), np.float32)


def greedy(decoder, cfg, cross):
    """cross: the encoder's outputs by name (cross_k/cross_v, or one pair per layer)."""
    suppress = np.array(cfg["suppress_tokens"])
    empty = empty_cache(cfg)
    self_k, self_v = empty, empty
    tokens = [cfg["sot"], cfg["no_timestamps"]]
    step_in = np.array([tokens], np.int64)
    out = []
    for step in range(MAX_TOKENS):
        logits, self_k, self_v = decoder.run(None, {
            "tokens": step_in, "self_k": self_k, "self_v": self_v, **cross})
        last = logits[0, -1].copy()
        last[suppress] = -np.inf
        if step == 0:
            last[cfg["suppress_blank"]] = -np.inf
        tok = int(last.argmax())
        if tok == cfg["eot"]:
            break
        out.append(tok)
        step_in = np.array([[tok]], np.int64)
    return tokens, out


def check_cache(decoder, cfg, cross, prompt, text_tokens):
    """Compare one call over all tokens with token-by-token calls: (max |dlogits|, argmax agreement).

    For int8 graphs the logits legitimately differ (dynamic quantisation picks activation
    scales per call, so they depend on which rows share the call); argmax should still agree.
    """
    seq = np.array([prompt + text_tokens], np.int64)
    empty = empty_cache(cfg)
    full = decoder.run(["logits"], {"tokens": seq, "self_k": empty, "self_v": empty, **cross})[0]
    k, v, steps = empty, empty, []
    for i in range(seq.shape[1]):
        logits, k, v = decoder.run(None, {"tokens": seq[:, i:i + 1], "self_k": k, "self_v": v, **cross})
        steps.append(logits)
    steps = np.concatenate(steps, axis=1)
    agree = int((full.argmax(-1) == steps.argmax(-1)).sum())
    return float(np.abs(full - steps).max()), f"{agree}/{seq.shape[1]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--wav", type=Path)
    ap.add_argument("--text", default=DEFAULT_TEXT, help="what espeak-ng says when --wav is not given")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--audio-ctx", default="3000", help="mel frames fed to the encoder (even), or 'auto'")
    args = ap.parse_args()

    cfg = json.loads((args.model / "config.json").read_text())
    vocab = (args.model / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    if args.wav is None:
        args.wav = Path(tempfile.gettempdir()) / "kiki_verify.wav"
        speak(args.text, args.wav)
    audio = read_wav(args.wav)
    mel = log_mel(audio)
    if args.audio_ctx == "auto":
        # Speech frames plus a little room (~0.5 s), rounded up to even for the stride-2 conv.
        frames = 2 * math.ceil((len(audio) / HOP + 50) / 2)
    else:
        frames = int(args.audio_ctx)
    mel = mel[None, :, :min(frames, mel.shape[1])]

    suffix = ".int8.onnx" if args.int8 else ".onnx"
    encoder = session(args.model / f"encoder{suffix}")
    decoder = session(args.model / f"decoder{suffix}")
    names = [o.name for o in encoder.get_outputs()]
    cross = dict(zip(names, encoder.run(names, {"mel": mel})))
    prompt, text_tokens = greedy(decoder, cfg, cross)

    byte_of = gpt2_byte_decoder()
    text = bytes(byte_of[c] for t in text_tokens for c in vocab[t]).decode("utf-8", "replace")
    print(f"audio {len(audio) / 16000:.2f}s, mel frames {mel.shape[2]}, {len(text_tokens)} tokens")
    print(f"tokens: {text_tokens}")
    print(f"text: {text.strip()}")
    diff, agree = check_cache(decoder, cfg, cross, prompt, text_tokens)
    print(f"cache vs no-cache: max |dlogits| {diff:.2e}, argmax agreement {agree}")


if __name__ == "__main__":
    main()
