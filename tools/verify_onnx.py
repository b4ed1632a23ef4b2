#!/usr/bin/env python3
"""End-to-end check of the converted Whisper ONNX graphs: mel_ref -> encoder -> greedy decode.

  verify_onnx.py --model DIR [--wav IN.wav | --text T [--voice V]] [--int8] [--audio-ctx F]
                 [--language auto|CODE] [--expect TEXT]

Without --wav, speaks --text with espeak-ng (voice --voice, e.g. en-us or cmn). --audio-ctx
auto picks a shortened mel window covering the speech (like whisper.cpp's audio_ctx) instead
of the full 3000 frames. Multilingual models: --language auto (the default) detects the
language from the logits after <|startoftranscript|> and prints the top candidates; the
prompt is then <|sot|><|lang|><|transcribe|><|notimestamps|>. --expect prints the character
error rate against a reference (whitespace and punctuation ignored; the measure for Chinese).

Also checks that one cache-less decoder call matches the incremental KV-cache path, and, if
the decoder has the cross_qk output, how well the alignment heads follow the audio: per
token, the frame with the most (head-averaged) attention, which should move forward with the
tokens; it prints each word's peak time and the share of steps that do not go backwards.
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import unicodedata
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


def encode_greedy(text, vocab):
    """Text -> tokens by longest match over the vocabulary's byte strings. Not GPT-2's BPE
    merges, but any token sequence spelling the text serves as a <|startofprev|> prompt."""
    to_char = {b: c for c, b in gpt2_byte_decoder().items()}
    index = {tok: i for i, tok in enumerate(vocab) if tok and not tok.startswith("<|")}
    longest = max(map(len, index))
    chars = "".join(to_char[b] for b in text.encode("utf-8"))
    out, i = [], 0
    while i < len(chars):
        for n in range(min(longest, len(chars) - i), 0, -1):
            if chars[i:i + n] in index:
                out.append(index[chars[i:i + n]])
                i += n
                break
        else:
            raise SystemExit(f"cannot tokenise {chars[i]!r}")
    return out


def speak(text, path, voice=None, speed=None):
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        opts = (["-v", voice] if voice else []) + (["-s", str(speed)] if speed else [])
        subprocess.run(["espeak-ng", *opts, "-w", str(raw), text], check=True)
        # -R: repeatable dither; without it every run gets different noise (and int8 base
        # decodes of synthetic speech were seen to flip between runs).
        subprocess.run(["sox", "-R", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # shared 2-core machine
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def empty_cache(cfg, batch=1):
    return np.zeros((cfg["n_text_layer"], batch, 0, cfg["n_state"]), np.float32)


def detect_language(decoder, cfg, cross):
    """[(code, probability)] best first, from the logits after <|startoftranscript|>."""
    empty = empty_cache(cfg)
    logits = decoder.run(["logits"], {"tokens": np.array([[cfg["sot"]]], np.int64),
                                      "self_k": empty, "self_v": empty, **cross})[0][0, -1]
    codes = list(cfg["languages"])
    ids = np.array([cfg["languages"][c] for c in codes])
    lang = logits[ids] - logits[ids].max()
    probs = np.exp(lang) / np.exp(lang).sum()
    return sorted(zip(codes, probs.tolist()), key=lambda cp: -cp[1])


def greedy(decoder, cfg, cross, prompt):
    """cross: the encoder's outputs by name (cross_k/cross_v, or one pair per layer).

    Returns the text tokens and, if the decoder has cross_qk, for each of them the
    alignment heads' weights of the step that chose it ([H_align, A]).
    """
    suppress = np.array(cfg["suppress_tokens"])
    names = [o.name for o in decoder.get_outputs()]
    want = ["logits", "new_self_k", "new_self_v"] + (["cross_qk"] if "cross_qk" in names else [])
    empty = empty_cache(cfg)
    self_k, self_v = empty, empty
    step_in = np.array([prompt], np.int64)
    out, qk = [], []
    for step in range(MAX_TOKENS):
        logits, self_k, self_v, *rest = decoder.run(want, {
            "tokens": step_in, "self_k": self_k, "self_v": self_v, **cross})
        last = logits[0, -1].copy()
        last[suppress] = -np.inf
        if step == 0:
            last[cfg["suppress_blank"]] = -np.inf
        tok = int(last.argmax())
        if tok == cfg["eot"]:
            break
        out.append(tok)
        if rest:
            assert rest[0].shape[:3] == (1, len(cfg["alignment_heads"]), step_in.shape[1]), rest[0].shape
            qk.append(rest[0][0, :, -1])
        step_in = np.array([[tok]], np.int64)
    return out, qk


def check_cache(decoder, cfg, cross, prompt, text_tokens):
    """Compare one call over all tokens with token-by-token calls: (max |dlogits|, argmax agreement).

    For int8 graphs the logits legitimately differ (dynamic quantisation picks activation
    scales per call, so they depend on which rows share the call); argmax should still agree.
    """
    seq = np.array([prompt + text_tokens], np.int64)
    empty = empty_cache(cfg)
    has_qk = "cross_qk" in [o.name for o in decoder.get_outputs()]
    want = ["logits"] + (["cross_qk"] if has_qk else [])
    full = decoder.run(want, {"tokens": seq, "self_k": empty, "self_v": empty, **cross})
    k, v, steps, qks = empty, empty, [], []
    for i in range(seq.shape[1]):
        logits, k, v, *qk = decoder.run(want[:1] + ["new_self_k", "new_self_v"] + want[1:],
                                        {"tokens": seq[:, i:i + 1], "self_k": k, "self_v": v, **cross})
        steps.append(logits)
        qks += qk
    steps = np.concatenate(steps, axis=1)
    agree = int((full[0].argmax(-1) == steps.argmax(-1)).sum())
    qk_diff = float(np.abs(full[1] - np.concatenate(qks, axis=2)).max()) if has_qk else None
    return float(np.abs(full[0] - steps).max()), f"{agree}/{seq.shape[1]}", qk_diff


def alignment_summary(qk, text_tokens, vocab, byte_of, speech_frames):
    """Per token, the audio position (s) the alignment heads attend to most; words' start times."""
    w = np.stack(qk, axis=1)[:, :, :speech_frames]  # [H, T, A'] over the speech frames only
    w = w / w.sum(-1, keepdims=True)  # Whisper softmaxes over these frames: renormalise
    # Whisper's timing.py: standardise each head over tokens, then average the heads.
    z = (w - w.mean(1, keepdims=True)) / (w.std(1, keepdims=True) + 1e-9)
    peak = z.mean(0).argmax(-1) * 0.02  # encoder frames are 20 ms
    raw = w.mean(0).argmax(-1) * 0.02  # the plain head average, without standardising
    share = lambda p: float((np.diff(p) >= -0.1).mean()) if len(p) > 1 else 1.0
    forward = (share(peak), share(raw))
    rho = float(np.corrcoef(np.arange(len(peak)), peak)[0, 1]) if len(peak) > 2 else float("nan")
    words, cur = [], None
    for tok, t in zip(text_tokens, peak):
        piece = bytes(byte_of.get(c, 0) for c in vocab[tok]).decode("utf-8", "replace")
        if cur is None or piece.startswith(" ") or not piece.isascii():
            cur = [piece.strip(), t]
            words.append(cur)
        else:
            cur[0] += piece
    return peak, forward, rho, words


def cer(hyp, ref):
    """Character error rate: Levenshtein distance / reference length, ignoring spaces and punctuation."""
    keep = lambda s: [c for c in unicodedata.normalize("NFKC", s).lower()
                      if not c.isspace() and not unicodedata.category(c).startswith("P")]
    h, r = keep(hyp), keep(ref)
    prev = list(range(len(h) + 1))
    for i, rc in enumerate(r, 1):
        cur = [i]
        for j, hc in enumerate(h, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rc != hc)))
        prev = cur
    return prev[-1] / max(len(r), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--wav", type=Path)
    ap.add_argument("--text", default=DEFAULT_TEXT, help="what espeak-ng says when --wav is not given")
    ap.add_argument("--voice", help="espeak-ng voice, e.g. en-us, cmn")
    ap.add_argument("--speed", type=int, help="espeak-ng words per minute")
    ap.add_argument("--language", default="auto", help="multilingual models: language code or 'auto'")
    ap.add_argument("--prompt", help="previous-text prompt (<|startofprev|> ...), e.g. to steer the script")
    ap.add_argument("--expect", help="reference transcript for the character error rate "
                                     "(default: --text when espeak-ng speaks it)")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--audio-ctx", default="3000", help="mel frames fed to the encoder (even), or 'auto'")
    args = ap.parse_args()

    cfg = json.loads((args.model / "config.json").read_text())
    vocab = (args.model / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    if args.wav is None:
        args.wav = Path(tempfile.gettempdir()) / "kiki_verify.wav"
        speak(args.text, args.wav, args.voice, args.speed)
        if args.expect is None:
            args.expect = args.text
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
    prompt = [cfg["sot"]]
    if args.prompt:
        prompt = [cfg["sot_prev"], *encode_greedy(" " + args.prompt.strip(), vocab), cfg["sot"]]
    if cfg.get("multilingual"):
        lang = args.language
        if lang == "auto":
            ranked = detect_language(decoder, cfg, cross)
            print("language: " + ", ".join(f"{c} {p:.3f}" for c, p in ranked[:5]))
            lang = ranked[0][0]
        prompt += [cfg["languages"][lang], cfg["transcribe"]]
    prompt.append(cfg["no_timestamps"])
    text_tokens, qk = greedy(decoder, cfg, cross, prompt)

    byte_of = gpt2_byte_decoder()
    text = bytes(byte_of[c] for t in text_tokens for c in vocab[t]).decode("utf-8", "replace")
    print(f"audio {len(audio) / 16000:.2f}s, mel frames {mel.shape[2]}, {len(text_tokens)} tokens")
    print(f"prompt: {prompt}")
    print(f"tokens: {text_tokens}")
    print(f"text: {text.strip()}")
    if args.expect:
        print(f"CER vs reference: {cer(text, args.expect):.3f}")
    if qk:
        speech = min(mel.shape[2], math.ceil(len(audio) / HOP)) // 2
        peak, forward, rho, words = alignment_summary(qk, text_tokens, vocab, byte_of, speech)
        print(f"cross_qk: heads {cfg['alignment_heads']}, [1, {qk[0].shape[0]}, N, {qk[0].shape[1]}] per step")
        print(f"alignment: peak frame non-decreasing (within 0.1 s) on {forward[0]:.0%} of steps "
              f"({forward[1]:.0%} for the plain head average), "
              f"corr(token index, peak time) {rho:.3f}, peaks span {peak.min():.2f}-{peak.max():.2f}s "
              f"of {len(audio) / 16000:.2f}s")
        print("words: " + " ".join(f"{w}@{t:.2f}" for w, t in words))
    diff, agree, qk_diff = check_cache(decoder, cfg, cross, prompt, text_tokens)
    print(f"cache vs no-cache: max |dlogits| {diff:.2e}, argmax agreement {agree}"
          + (f", max |dcross_qk| {qk_diff:.2e}" if qk_diff is not None else ""))


if __name__ == "__main__":
    main()
